/**
 * Test scaffolding: a real standalone nyo-realtime server in a subprocess, JWTs
 * for it, and a TCP relay that can cut the line, to make a client lose its
 * connection without the server noticing first (as a network failure does).
 */
import { ChildProcess, spawn } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import WebSocket from 'ws';

import type { WebSocketLike } from '../src/client';

export const SECRET = 'ts-client-test-secret-long-enough-for-hs256';

const REPO = path.resolve(__dirname, '..', '..');

/**
 * The Python that has nyo_realtime_ext: $NYO_PYTHON, else the repo's .venv
 * (what .ci/run creates), else python3 on PATH.
 */
export function python(): string {
  if (process.env.NYO_PYTHON) {
    return process.env.NYO_PYTHON;
  }
  const venv = path.join(REPO, '.venv', 'bin', 'python');
  return existsSync(venv) ? venv : 'python3';
}

function base64url(data: string | Buffer): string {
  return Buffer.from(data).toString('base64url');
}

/** An HS256 JWT, as the server's PyJWT checks it. */
export function makeToken(
  sub: string,
  claims: Record<string, unknown> = {},
  secret = SECRET
): string {
  const header = base64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }));
  const body = base64url(
    JSON.stringify({ sub, name: sub[0].toUpperCase() + sub.slice(1), ...claims })
  );
  const signature = createHmac('sha256', secret)
    .update(`${header}.${body}`)
    .digest('base64url');
  return `${header}.${body}.${signature}`;
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

function waitForPort(
  port: number,
  child: ChildProcess,
  output: () => string
): Promise<void> {
  const deadline = Date.now() + 30_000;
  return new Promise((resolve, reject) => {
    const attempt = () => {
      if (child.exitCode !== null) {
        reject(new Error(`server exited (${child.exitCode}): ${output()}`));
        return;
      }
      const socket = net.connect(port, '127.0.0.1');
      socket.once('connect', () => {
        socket.destroy();
        resolve();
      });
      socket.once('error', () => {
        socket.destroy();
        if (Date.now() > deadline) {
          reject(new Error(`server did not listen on ${port}: ${output()}`));
        } else {
          setTimeout(attempt, 50);
        }
      });
    };
    attempt();
  });
}

/** `nyo-realtime serve`, restartable on the same port and database. */
export class StandaloneServer {
  port = 0;
  private _child: ChildProcess | undefined;
  private _output = '';
  private _dir = mkdtempSync(path.join(tmpdir(), 'nyo-ts-'));

  constructor(private _extraArgs: string[] = []) {}

  get url(): string {
    return `ws://127.0.0.1:${this.port}/ws`;
  }

  async start(): Promise<this> {
    if (!this.port) {
      this.port = await freePort();
    }
    const args = [
      '-m', 'nyo_realtime_ext.server', 'serve',
      '--port', String(this.port),
      '--jwt-secret', SECRET,
      '--db', path.join(this._dir, 'realtime.db'),
      ...this._extraArgs
    ]; // prettier-ignore
    const child = spawn(python(), args, {
      cwd: REPO,
      env: { ...process.env, PYTHONUNBUFFERED: '1' },
      stdio: ['ignore', 'pipe', 'pipe']
    });
    this._child = child;
    child.stdout!.on('data', chunk => (this._output += chunk));
    child.stderr!.on('data', chunk => (this._output += chunk));
    await waitForPort(this.port, child, () => this._output);
    return this;
  }

  /** SIGTERM: the server closes every connection with 1001, then exits. */
  async stop(): Promise<void> {
    const child = this._child;
    if (!child || child.exitCode !== null) {
      return;
    }
    const exited = new Promise(resolve => child.once('exit', resolve));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
    await exited;
    clearTimeout(timer);
  }

  async dispose(): Promise<void> {
    await this.stop();
    rmSync(this._dir, { recursive: true, force: true });
  }
}

/** A TCP relay in front of the server whose line can be cut and restored. */
export class Relay {
  port = 0;
  private _server = net.createServer(socket => this._accept(socket));
  private _sockets = new Set<net.Socket>();
  private _down = false;

  constructor(private _target: number) {}

  get url(): string {
    return `ws://127.0.0.1:${this.port}/ws`;
  }

  start(): Promise<this> {
    return new Promise(resolve => {
      this._server.listen(0, '127.0.0.1', () => {
        this.port = (this._server.address() as net.AddressInfo).port;
        resolve(this);
      });
    });
  }

  /** Drop every connection and refuse new ones, like a network outage. */
  cut(): void {
    this._down = true;
    for (const socket of this._sockets) {
      socket.destroy();
    }
    this._sockets.clear();
  }

  restore(): void {
    this._down = false;
  }

  /**
   * Stop carrying bytes without closing anything, and refuse new connections:
   * a link that died silently (a sleeping laptop, a NAT that forgot it). Only
   * a heartbeat can tell.
   */
  freeze(): void {
    this._down = true;
    for (const socket of this._sockets) {
      socket.unpipe();
      socket.pause();
      // Nor pass on a close: the server's own heartbeat would close its side,
      // and the client must find out by itself.
      socket.removeAllListeners('close');
      socket.removeAllListeners('error');
      socket.on('error', () => undefined);
    }
  }

  close(): Promise<void> {
    this.cut();
    return new Promise(resolve => this._server.close(() => resolve()));
  }

  private _accept(socket: net.Socket): void {
    if (this._down) {
      socket.destroy();
      return;
    }
    const upstream = net.connect(this._target, '127.0.0.1');
    for (const [a, b] of [
      [socket, upstream],
      [upstream, socket]
    ]) {
      this._sockets.add(a);
      a.pipe(b);
      a.on('error', () => b.destroy());
      a.on('close', () => {
        this._sockets.delete(a);
        b.destroy();
      });
    }
  }
}

/** Node 20 has no global WebSocket: the client takes `ws` instead. */
export const createSocket = (url: string): WebSocketLike =>
  new WebSocket(url) as unknown as WebSocketLike;

/**
 * Resolve when `predicate` holds, polling; fail with `what` after `timeout` ms.
 * Only for what stays once it holds (a count that grows, a final state, a
 * recorded list): something transient can come and go between two polls.
 */
export async function eventually<T>(
  predicate: () => T | undefined | false,
  what: string | (() => string),
  timeout = 10_000
): Promise<T> {
  const deadline = Date.now() + timeout;
  for (;;) {
    const value = predicate();
    if (value) {
      return value;
    }
    if (Date.now() > deadline) {
      throw new Error(
        `timed out waiting for ${typeof what === 'string' ? what : what()}`
      );
    }
    await new Promise(resolve => setTimeout(resolve, 20));
  }
}
