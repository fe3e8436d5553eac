// The status overlay over the face: conversation id, mode, playout offset, dropped frames.

export class Overlay {
  constructor(root) {
    this.root = root;
    this.fields = {};
    for (const el of root.querySelectorAll('[data-field]')) this.fields[el.dataset.field] = el;
    this.lastText = {};
  }

  set(field, text) {
    const el = this.fields[field];
    if (el && this.lastText[field] !== text) {
      el.textContent = text;
      this.lastText[field] = text;
    }
  }

  /** Show a presented state; `avOffsetMs` is the last measured a/v sync offset, if any. */
  update(state, receiver, avOffsetMs) {
    this.set('conversation', state.conversationId ?? '—');
    this.set('mode', state.mode);
    this.set('offset', `${state.offsetMs.toFixed(0)} ms (jitter ${state.jitterDelayMs.toFixed(0)} + out ${state.outputLatencyMs.toFixed(0)})`);
    const s = receiver.controller.stats;
    this.set('dropped', `${state.dropped} (late ${s.framesLate}, other conversation ${s.framesDropped})`);
    this.set('interrupted', receiver.lastInterrupted ? `${receiver.lastInterrupted} (${receiver.interrupts})` : '—');
    if (avOffsetMs !== undefined) this.set('avsync', `${avOffsetMs.toFixed(1)} ms`);
  }
}
