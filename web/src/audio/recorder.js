// Records the microphone for a fixed time through WebAudio and returns a PCM16 WAV.

import { encodeWavPcm16 } from './wav.js';
import { loadWorklets } from './worklets.js';

/**
 * Record `seconds` of microphone audio with the given AudioContext. Resolves to a Uint8Array
 * WAV (PCM16 mono) at the context's sample rate, ready for the speak-audio byte stream.
 */
export async function recordMicrophoneWav(audioContext, seconds, { onLevel } = {}) {
  if (!(seconds > 0)) throw new RangeError('seconds must be positive');
  await loadWorklets(audioContext);
  const stream = await navigator.mediaDevices.getUserMedia({
    audio: { channelCount: 1, echoCancellation: true, noiseSuppression: true },
  });
  const source = audioContext.createMediaStreamSource(stream);
  const capture = new AudioWorkletNode(audioContext, 'pcm-capture', { numberOfOutputs: 0 });
  const blocks = [];
  let total = 0;
  const wanted = Math.round(seconds * audioContext.sampleRate);
  try {
    await new Promise((resolve) => {
      capture.port.onmessage = (ev) => {
        blocks.push(ev.data);
        total += ev.data.length;
        if (onLevel) onLevel(Math.min(1, total / wanted));
        if (total >= wanted) resolve();
      };
      source.connect(capture);
    });
  } finally {
    source.disconnect();
    capture.port.onmessage = null;
    for (const t of stream.getTracks()) t.stop();
  }
  const samples = new Float32Array(wanted);
  let at = 0;
  for (const block of blocks) {
    const n = Math.min(block.length, wanted - at);
    samples.set(block.subarray(0, n), at);
    at += n;
    if (at >= wanted) break;
  }
  return encodeWavPcm16(samples, audioContext.sampleRate);
}
