/**
 * A trailing-edge throttle: values pushed in a burst become one call, with the
 * last value, at the end of the window. Moving through a notebook with the
 * arrow keys changes the active cell many times a second; everyone else needs
 * only where it ends up, a few times a second at most.
 */
export class TrailingThrottle<T> {
  /**
   * @param _send called with the latest value, at most once per `_interval` ms.
   * @param _interval the window, in ms: 250 is at most 4 updates a second.
   */
  constructor(
    private _send: (value: T) => void,
    private _interval = 250
  ) {}

  /** Whether a value waits to be sent. */
  get pending(): boolean {
    return this._timer !== undefined;
  }

  /** Take a value; it (or a later one) is sent when the current window ends. */
  push(value: T): void {
    this._latest = value;
    if (this._timer === undefined) {
      this._timer = setTimeout(() => this.flush(), this._interval);
    }
  }

  /** Send what waits now (when leaving, say), and start a fresh window. */
  flush(): void {
    if (this._timer === undefined) {
      return;
    }
    clearTimeout(this._timer);
    this._timer = undefined;
    const value = this._latest as T;
    this._latest = undefined;
    this._send(value);
  }

  /** Drop what waits, unsent. */
  cancel(): void {
    if (this._timer !== undefined) {
      clearTimeout(this._timer);
    }
    this._timer = undefined;
    this._latest = undefined;
  }

  private _timer: ReturnType<typeof setTimeout> | undefined;
  private _latest: T | undefined;
}
