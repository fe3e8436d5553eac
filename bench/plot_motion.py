"""Plot the embedded generator's main blendshape curves over a sentence's waveform.

Run: .venv/bin/python bench/plot_motion.py [--out docs/motion-curves.png]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from motion_speech import BILABIALS, generate, synthesize, with_silence  # noqa: E402

from avatar_relay.motion import EmbeddedMotionSource  # noqa: E402
from avatar_relay.motion.embedded.channels import CH  # noqa: E402

SENTENCE = "Bob made my mom a maple pie, and the quick brown fox jumped over it."
CURVES = ("jawOpen", "mouthClose", "mouthPressLeft", "mouthFunnel", "mouthSmileLeft",
          "eyeBlinkLeft")  # fmt: skip


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="docs/motion-curves.png")
    args = parser.parse_args()
    speech = with_silence(synthesize(SENTENCE), 0.4, 0.4)
    w = await generate(EmbeddedMotionSource(), speech)
    sr = speech.sample_rate
    t_audio = np.arange(len(speech.pcm)) / sr
    t_frames = (np.arange(len(w)) + 0.5) / 25.0
    fig, (ax_wave, ax_curves) = plt.subplots(2, 1, figsize=(12, 6), sharex=True,
                                             height_ratios=(1, 2))  # fmt: skip
    ax_wave.plot(t_audio, speech.pcm / 32768.0, lw=0.4, color="0.3")
    for p in speech.phones:
        if p.name in BILABIALS:
            ax_wave.axvspan(p.start_s, p.end_s, color="tab:red", alpha=0.25, lw=0)
            ax_curves.axvspan(p.start_s, p.end_s, color="tab:red", alpha=0.12, lw=0)
    ax_wave.set_ylabel("waveform")
    ax_wave.set_title(f'embedded generator, lookahead 100 ms: "{SENTENCE}" (espeak-ng); '
                      "red = p/b/m labels", fontsize=9)  # fmt: skip
    for name in CURVES:
        ax_curves.step(t_frames, w[:, CH[name]], where="mid", label=name, lw=1.2)
    ax_curves.set_ylabel("weight")
    ax_curves.set_xlabel("time (s); frame k covers [k/25, (k+1)/25)")
    ax_curves.set_ylim(0, 1)
    ax_curves.legend(loc="upper right", fontsize=8, ncol=3)
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    asyncio.run(main())
