// The client's AudioWorklet processors, and their loading into an AudioContext:
//   onset-detector: passes audio through and reports burst onsets (|x| >= threshold after
//     at least minGapS below it) with the context time of the exact sample.
//   pcm-capture: posts the mono input in blocks, for recording the microphone.
//
// The processors are defined inside one function that is never called on the page: its
// source text becomes a Blob module that the worklet scope runs. So an app that installs the
// package has no extra file to serve, and its bundler may minify this file freely (the body
// refers only to worklet globals). The body must stay self-contained: no imports, no class
// fields (a bundler lowering them would insert helpers that the worklet scope lacks).

/* global AudioWorkletProcessor, registerProcessor, sampleRate, currentTime */
function defineProcessors() {
  class OnsetDetector extends AudioWorkletProcessor {
    constructor(options) {
      super();
      const opts = options.processorOptions || {};
      this.threshold = opts.threshold ?? 0.05;
      this.minGap = Math.round((opts.minGapS ?? 0.05) * sampleRate);
      this.quiet = this.minGap + 1; // samples since the last loud one
    }

    process(inputs, outputs) {
      const input = inputs[0];
      const output = outputs[0];
      const channel = input && input[0];
      if (output) {
        for (let c = 0; c < output.length; c += 1) {
          if (input && input[c]) output[c].set(input[c]);
          else if (channel) output[c].set(channel);
        }
      }
      if (!channel) return true;
      for (let i = 0; i < channel.length; i += 1) {
        if (Math.abs(channel[i]) >= this.threshold) {
          if (this.quiet > this.minGap) {
            this.port.postMessage({ type: 'onset', contextTime: currentTime + i / sampleRate });
          }
          this.quiet = 0;
        } else {
          this.quiet += 1;
        }
      }
      return true;
    }
  }

  class PcmCapture extends AudioWorkletProcessor {
    process(inputs) {
      const channel = inputs[0] && inputs[0][0];
      if (channel) this.port.postMessage(channel.slice());
      return true;
    }
  }

  registerProcessor('onset-detector', OnsetDetector);
  registerProcessor('pcm-capture', PcmCapture);
}

/** The worklet module's source text. */
export const WORKLET_SOURCE = `(${defineProcessors.toString()})();\n`;

const loaded = new WeakMap(); // AudioContext -> Promise<void>

/**
 * Add the processors to `audioContext` once (later calls share the first load). `url` may
 * name a module with the same processors instead, for pages whose CSP forbids blob: URLs.
 */
export function loadWorklets(audioContext, url = null) {
  let ready = loaded.get(audioContext);
  if (ready === undefined) {
    if (!audioContext.audioWorklet) return Promise.reject(new Error('AudioWorklet is not supported'));
    ready = (async () => {
      if (url) {
        await audioContext.audioWorklet.addModule(url);
        return;
      }
      const blobUrl = URL.createObjectURL(new Blob([WORKLET_SOURCE], { type: 'text/javascript' }));
      try {
        await audioContext.audioWorklet.addModule(blobUrl);
      } finally {
        URL.revokeObjectURL(blobUrl);
      }
    })();
    loaded.set(audioContext, ready);
    // A failed load may be retried (with another url, say).
    ready.catch(() => loaded.delete(audioContext));
  }
  return ready;
}
