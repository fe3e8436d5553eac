// AudioWorklet processors, loaded with audioContext.audioWorklet.addModule('worklets.js').
//   onset-detector: passes audio through and reports burst onsets (|x| >= threshold after
//     at least minGapS below it) with the context time of the exact sample.
//   pcm-capture: posts the mono input in blocks, for recording the microphone.

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
