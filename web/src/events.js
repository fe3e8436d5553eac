// A small typed-by-name event emitter shared by AvatarPlayer and HostModeBridge: events are
// declared up front (a typo throws), on() returns its own unsubscribe function, and a listener
// that throws is reported to `onListenerError` instead of breaking the emitter's caller.

export class Emitter {
  constructor(events, onListenerError = null) {
    this.events = events;
    this.listeners = new Map();
    this.onListenerError = onListenerError;
  }

  on(event, fn) {
    if (!this.events.has(event)) throw new RangeError(`unknown event ${event}`);
    let set = this.listeners.get(event);
    if (!set) {
      set = new Set();
      this.listeners.set(event, set);
    }
    set.add(fn);
    return () => set.delete(fn);
  }

  has(event) {
    return (this.listeners.get(event)?.size ?? 0) > 0;
  }

  emit(event, ...args) {
    const set = this.listeners.get(event);
    if (!set) return;
    for (const fn of set) {
      if (this.onListenerError === null) {
        fn(...args);
        continue;
      }
      try {
        fn(...args);
      } catch (err) {
        this.onListenerError(err);
      }
    }
  }
}
