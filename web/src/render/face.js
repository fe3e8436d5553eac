// A 2D face drawn on a canvas from ARKit blendshape weights, so the demo needs no assets:
// jaw, lips (open/close, funnel, pucker, smile, stretch, press, roll), eyes (blink, wide,
// squint, gaze), brows, cheeks, tongue and head pose (pitch, yaw, roll in [-1, 1]).

const SKIN = '#f2c29b';
const SKIN_SHADE = '#dfa47e';
const HAIR = '#3b2a20';
const LIP = '#b5514f';
const MOUTH = '#4a1418';
const TEETH = '#f7f3ea';
const TONGUE = '#d86a6f';
const IRIS = '#3f6f8f';

const MAX_YAW_PX = 26;
const MAX_PITCH_PX = 18;
const MAX_ROLL_RAD = 0.25;

const clamp01 = (v) => Math.min(1, Math.max(0, v || 0));
const clamp11 = (v) => Math.min(1, Math.max(-1, v || 0));

export class FaceRenderer {
  constructor(canvas) {
    this.canvas = canvas;
    this.ctx = canvas.getContext('2d');
  }

  /** Draw one frame; `w` maps channel names to weights (missing channels are 0). */
  draw(w = {}) {
    const { ctx, canvas } = this;
    const W = canvas.width;
    const H = canvas.height;
    const g = (name) => clamp01(w[name]);
    const pair = (l, r) => (g(l) + g(r)) / 2;
    const yaw = clamp11(w.headYaw);
    const pitch = clamp11(w.headPitch);
    const roll = clamp11(w.headRoll);
    const jaw = g('jawOpen');

    ctx.save();
    ctx.clearRect(0, 0, W, H);
    const bg = ctx.createLinearGradient(0, 0, 0, H);
    bg.addColorStop(0, '#dfe9f3');
    bg.addColorStop(1, '#b7c9dc');
    ctx.fillStyle = bg;
    ctx.fillRect(0, 0, W, H);

    const s = Math.min(W, H) / 540; // drawing units: a 540-high canvas
    const cx = W / 2;
    const cy = H * 0.47;
    // Shoulders and neck do not turn with the head.
    ctx.fillStyle = '#4f6d8a';
    ctx.beginPath();
    ctx.ellipse(cx, cy + 270 * s, 190 * s, 90 * s, 0, Math.PI, 0);
    ctx.fill();
    ctx.fillStyle = SKIN_SHADE;
    ctx.fillRect(cx - 42 * s, cy + 120 * s, 84 * s, 80 * s);

    ctx.translate(cx + yaw * 6 * s, cy + pitch * 4 * s);
    ctx.rotate(roll * MAX_ROLL_RAD);
    ctx.scale(s, s);
    const fx = yaw * MAX_YAW_PX; // features slide with yaw and pitch: a cheap 3/4 turn
    const fy = pitch * MAX_PITCH_PX;

    this.head(jaw, g('cheekPuff'), yaw);
    this.brows(w, g, fx, fy);
    this.eyes(w, g, fx, fy);
    // Nose
    ctx.strokeStyle = SKIN_SHADE;
    ctx.lineWidth = 4;
    ctx.lineCap = 'round';
    ctx.beginPath();
    ctx.moveTo(fx * 1.15, -10 + fy);
    ctx.quadraticCurveTo(fx * 1.3 + 10, 30 + fy, fx * 1.15 - 2, 38 + fy);
    ctx.stroke();
    const sneer = pair('noseSneerLeft', 'noseSneerRight');
    ctx.fillStyle = SKIN_SHADE;
    for (const side of [-1, 1]) {
      ctx.beginPath();
      ctx.ellipse(fx * 1.15 + side * 12, 40 + fy - sneer * 4, 6, 4, 0, 0, Math.PI * 2);
      ctx.fill();
    }
    this.mouth(g, pair, jaw, fx, fy);
    ctx.restore();
  }

  head(jaw, puff, yaw) {
    const { ctx } = this;
    const chin = 150 + jaw * 28;
    const cheek = 118 + puff * 14;
    ctx.fillStyle = SKIN;
    ctx.beginPath();
    ctx.moveTo(-128, -40);
    ctx.bezierCurveTo(-132, -170, 132, -170, 128, -40);
    ctx.bezierCurveTo(cheek + 6, 40, 70, chin, 0, chin);
    ctx.bezierCurveTo(-70, chin, -cheek - 6, 40, -128, -40);
    ctx.fill();
    // Ears, offset against the turn
    for (const side of [-1, 1]) {
      ctx.beginPath();
      ctx.ellipse(side * 130 - yaw * 8, 0, 16, 30, 0, 0, Math.PI * 2);
      ctx.fill();
    }
    // Hair
    ctx.fillStyle = HAIR;
    ctx.beginPath();
    ctx.moveTo(-134, -30);
    ctx.bezierCurveTo(-150, -200, 150, -200, 134, -30);
    ctx.bezierCurveTo(120, -110, 40, -120, 10, -100);
    ctx.bezierCurveTo(-40, -125, -120, -110, -134, -30);
    ctx.fill();
    if (puff > 0.05) {
      ctx.fillStyle = `rgba(230, 120, 110, ${0.25 * puff})`;
      for (const side of [-1, 1]) {
        ctx.beginPath();
        ctx.arc(side * 78, 60, 26, 0, Math.PI * 2);
        ctx.fill();
      }
    }
  }

  brows(w, g, fx, fy) {
    const { ctx } = this;
    ctx.strokeStyle = HAIR;
    ctx.lineWidth = 8;
    ctx.lineCap = 'round';
    const inner = g('browInnerUp');
    for (const [side, suffix] of [[-1, 'Left'], [1, 'Right']]) {
      const down = g(`browDown${suffix}`);
      const outer = g(`browOuterUp${suffix}`);
      const base = -62 + fy + down * 10;
      const x0 = fx + side * 22;
      const x1 = fx + side * 84;
      ctx.beginPath();
      ctx.moveTo(x0, base - inner * 16 + down * 4);
      ctx.quadraticCurveTo(fx + side * 55, base - 14 - inner * 6 - outer * 6, x1, base - outer * 16 + 4);
      ctx.stroke();
    }
  }

  eyes(w, g, fx, fy) {
    const { ctx } = this;
    const gazeX = (name) => g(name);
    for (const [side, suffix] of [[-1, 'Left'], [1, 'Right']]) {
      const ex = fx + side * 52;
      const ey = -28 + fy;
      const wide = g(`eyeWide${suffix}`);
      const squint = g(`eyeSquint${suffix}`);
      const blink = g(`eyeBlink${suffix}`);
      const rx = 24;
      const ry = 14 + wide * 5 - squint * 4;
      // Gaze: "in" turns towards the nose, "out" away from it.
      const inward = gazeX(`eyeLookIn${suffix}`) - gazeX(`eyeLookOut${suffix}`);
      const gx = -side * inward * 9;
      const gy = (g(`eyeLookDown${suffix}`) - g(`eyeLookUp${suffix}`)) * 6;
      ctx.save();
      ctx.beginPath();
      ctx.ellipse(ex, ey, rx, ry, 0, 0, Math.PI * 2);
      ctx.fillStyle = '#ffffff';
      ctx.fill();
      ctx.clip();
      ctx.fillStyle = IRIS;
      ctx.beginPath();
      ctx.arc(ex + gx, ey + gy, 11, 0, Math.PI * 2);
      ctx.fill();
      ctx.fillStyle = '#111';
      ctx.beginPath();
      ctx.arc(ex + gx, ey + gy, 5, 0, Math.PI * 2);
      ctx.fill();
      ctx.fillStyle = '#fff';
      ctx.beginPath();
      ctx.arc(ex + gx + 3, ey + gy - 4, 2.5, 0, Math.PI * 2);
      ctx.fill();
      // Upper lid comes down with the blink, lower lid rises a little with the squint.
      const lid = Math.min(1, blink);
      ctx.fillStyle = SKIN;
      ctx.fillRect(ex - rx - 2, ey - ry - 2, 2 * rx + 4, (2 * ry + 4) * lid);
      ctx.fillRect(ex - rx - 2, ey + ry - squint * 6, 2 * rx + 4, squint * 8 + 2);
      ctx.restore();
      ctx.strokeStyle = '#5a3b2c';
      ctx.lineWidth = 3;
      ctx.beginPath();
      const lidY = ey - ry + lid * 2 * ry;
      ctx.moveTo(ex - rx, ey);
      ctx.quadraticCurveTo(ex, lidY - (1 - lid) * 6, ex + rx, ey);
      ctx.stroke();
    }
  }

  mouth(g, pair, jaw, fx, fy) {
    const { ctx } = this;
    const smile = pair('mouthSmileLeft', 'mouthSmileRight');
    const frown = pair('mouthFrownLeft', 'mouthFrownRight');
    const stretch = pair('mouthStretchLeft', 'mouthStretchRight');
    const press = pair('mouthPressLeft', 'mouthPressRight');
    const funnel = g('mouthFunnel');
    const pucker = g('mouthPucker');
    const close = g('mouthClose');
    const lowerDown = pair('mouthLowerDownLeft', 'mouthLowerDownRight');
    const upperUp = pair('mouthUpperUpLeft', 'mouthUpperUpRight');
    const rollIn = (g('mouthRollLower') + g('mouthRollUpper')) / 2;
    const side = g('mouthRight') - g('mouthLeft');

    const mx = fx * 0.9 + side * 10;
    const my = 88 + fy * 0.8 + jaw * 10;
    const half = 40 * (1 + 0.3 * smile + 0.35 * stretch - 0.5 * pucker - 0.35 * funnel);
    const open = Math.max(0, 54 * jaw * (1 - close) + 10 * funnel + 8 * lowerDown + 5 * upperUp - 6 * press);
    const cornerY = -10 * smile + 8 * frown;
    const lipT = Math.max(2, 7 + 5 * pucker + 3 * funnel - 5 * rollIn - 3 * press); // lip thickness
    const round = 0.35 + 0.6 * funnel + 0.4 * pucker; // how round the opening is

    const top = my - open * (0.35 + 0.1 * funnel) - upperUp * 3;
    const bottom = my + open * (0.65 - 0.1 * funnel);
    const left = mx - half;
    const right = mx + half;
    const ctrl = half * round;

    // Opening (dark), with teeth at the top and the tongue at the bottom.
    if (open > 1.5) {
      ctx.save();
      ctx.beginPath();
      ctx.moveTo(left, my + cornerY);
      ctx.bezierCurveTo(left + half - ctrl, top, right - half + ctrl, top, right, my + cornerY);
      ctx.bezierCurveTo(right - half + ctrl, bottom, left + half - ctrl, bottom, left, my + cornerY);
      ctx.closePath();
      ctx.fillStyle = MOUTH;
      ctx.fill();
      ctx.clip();
      ctx.fillStyle = TEETH;
      ctx.fillRect(left, top - 2, 2 * half, Math.min(10, open * 0.25) + 2);
      const tongue = g('tongueOut');
      ctx.fillStyle = TONGUE;
      ctx.beginPath();
      ctx.ellipse(mx, bottom - 2 + tongue * 6, half * 0.55, 8 + tongue * 10, 0, 0, Math.PI * 2);
      ctx.fill();
      ctx.restore();
    }
    // Lips: an upper and a lower band around the opening.
    ctx.fillStyle = LIP;
    ctx.beginPath();
    ctx.moveTo(left - 3, my + cornerY);
    ctx.bezierCurveTo(left + half - ctrl, top - lipT * 2.2, right - half + ctrl, top - lipT * 2.2, right + 3, my + cornerY);
    ctx.bezierCurveTo(right - half + ctrl, top, left + half - ctrl, top, left - 3, my + cornerY);
    ctx.fill();
    ctx.beginPath();
    ctx.moveTo(left - 3, my + cornerY);
    ctx.bezierCurveTo(left + half - ctrl, bottom, right - half + ctrl, bottom, right + 3, my + cornerY);
    ctx.bezierCurveTo(right - half + ctrl, bottom + lipT * 2.4, left + half - ctrl, bottom + lipT * 2.4, left - 3, my + cornerY);
    ctx.fill();
    if (open <= 1.5) {
      ctx.strokeStyle = MOUTH;
      ctx.lineWidth = 2;
      ctx.beginPath();
      ctx.moveTo(left, my + cornerY);
      ctx.bezierCurveTo(left + half - ctrl, my + 2, right - half + ctrl, my + 2, right, my + cornerY);
      ctx.stroke();
    }
  }
}
