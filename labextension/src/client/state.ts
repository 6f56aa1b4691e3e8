/**
 * A channel's shared state as a live map (docs/protocol.md, "Shared state"), as the
 * Python client's `SharedState`: reads are local; writes go through the server,
 * which numbers them in the channel's one order; an entry is applied only when its
 * version is newer than the one held, so that nothing is applied twice, nor an
 * older value over a newer one, across reconnections.
 */

import type { Channel } from './channel';

import { Emitter } from './events';

/** One key's latest value; `from` is null for the server's own code. */
export interface StateEntry {
  key: string;
  value: unknown;
  version: string;
  from: { userId: string; connectionId: string | null } | null;
}

/** A change as `changed` tells it; a deletion has `value` null. */
export interface StateChange {
  key: string;
  value: unknown;
  entry: StateEntry;
}

function position(version: string): [string, number] {
  const cut = version.lastIndexOf('-');
  const seq = Number(version.slice(cut + 1));
  return [version.slice(0, cut), Number.isInteger(seq) ? seq : -1];
}

/** Whether `version` comes after `than` (another epoch counts as after: it started over). */
export function isNewer(version: string, than: string | undefined): boolean {
  if (than === undefined) {
    return true;
  }
  const [epoch, seq] = position(version);
  const [heldEpoch, heldSeq] = position(than);
  return epoch !== heldEpoch || seq > heldSeq;
}

export class SharedState {
  /** Live entries by key. */
  readonly entries = new Map<string, StateEntry>();
  /** Each change, after `entries` holds it. */
  readonly changed = new Emitter<StateChange>();
  /** A snapshot arrived (the first, or after a reconnection). */
  readonly loaded = new Emitter<void>();
  isLoaded = false;
  /** Counts changes: a new number whenever `entries` or `isLoaded` changed. */
  stamp = 0;
  // Versions of every key seen, deleted ones too: a late echo never brings a value back.
  private _versions = new Map<string, string>();

  constructor(readonly channel: Channel) {}

  get(key: string): unknown {
    return this.entries.get(key)?.value;
  }

  /** The values as a plain object (a new one after each change). */
  toObject(): Record<string, unknown> {
    return Object.fromEntries(
      [...this.entries].map(([key, entry]) => [key, entry.value])
    );
  }

  /** Set `key` (null deletes it); resolves with the new version. */
  set(key: string, value: unknown): Promise<string> {
    return this._write(key, value, undefined);
  }

  delete(key: string): Promise<string> {
    return this._write(key, null, undefined);
  }

  /**
   * Set `key` only if its version is `ifVersion` (undefined: only if absent); a
   * stale one rejects with a `RealtimeError` of code `conflict` whose `entry` is the
   * entry as it is.
   */
  compareAndSet(
    key: string,
    value: unknown,
    ifVersion: string | undefined
  ): Promise<string> {
    return this._write(key, value, ifVersion ?? '');
  }

  private async _write(
    key: string,
    value: unknown,
    ifVersion: string | undefined
  ): Promise<string> {
    const frame: Record<string, unknown> = {
      type: 'state:set',
      channel: this.channel.name,
      key,
      value
    };
    if (ifVersion !== undefined) {
      frame.ifVersion = ifVersion;
    }
    const reply = await this.channel.client.request(frame, {
      afterSubscribe: this.channel
    });
    const version = reply.id as string;
    const client = this.channel.client;
    // Its `state:changed` says the same; whichever comes first is applied.
    this._apply({
      key,
      value,
      version,
      from: {
        userId: client.user?.userId ?? '',
        connectionId: client.connectionId ?? null
      }
    });
    return version;
  }

  // -- frames, from the channel -------------------------------------------------

  onSnapshot(frame: any): void {
    const entries: StateEntry[] = Array.isArray(frame.entries) ? frame.entries : [];
    if (frame.complete !== false) {
      const present = new Set(entries.map(entry => entry.key));
      for (const [key, gone] of [...this.entries]) {
        if (!present.has(key)) {
          this.entries.delete(key);
          this.stamp++;
          this.changed.emit({ key, value: null, entry: { ...gone, value: null } });
        }
      }
    }
    for (const entry of entries) {
      this._apply(entry);
    }
    this.isLoaded = true;
    this.stamp++;
    this.loaded.emit();
  }

  onChanged(frame: any): void {
    this._apply({
      key: frame.key,
      value: frame.value,
      version: frame.version,
      from: frame.from
    });
  }

  private _apply(entry: StateEntry): void {
    if (typeof entry.key !== 'string' || typeof entry.version !== 'string') {
      return;
    }
    if (!isNewer(entry.version, this._versions.get(entry.key))) {
      return;
    }
    this._versions.set(entry.key, entry.version);
    if (entry.value === null || entry.value === undefined) {
      if (!this.entries.delete(entry.key)) {
        return;
      }
    } else {
      this.entries.set(entry.key, entry);
    }
    this.stamp++;
    this.changed.emit({ key: entry.key, value: entry.value ?? null, entry });
  }
}
