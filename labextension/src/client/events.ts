/** The client's events, as typed listeners. */

type Listener<T> = (value: T) => void;

/** A tiny typed event source; a client must not depend on Lumino. */
export class Emitter<T> {
  private _listeners = new Set<Listener<T>>();

  connect(listener: Listener<T>): () => void {
    this._listeners.add(listener);
    return () => this._listeners.delete(listener);
  }

  emit(value: T): void {
    for (const listener of [...this._listeners]) {
      try {
        listener(value);
      } catch (error) {
        // One broken listener must not starve the others of events.
        console.error('nyo-realtime: listener failed', error);
      }
    }
  }

  clear(): void {
    this._listeners.clear();
  }
}
