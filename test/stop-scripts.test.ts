/**
 * `scripts/up.sh` and `npm run demo` (scripts/demo.sh) stop cleanly: on
 * SIGTERM, or a Ctrl-C (SIGINT to the terminal's foreground process group),
 * every process they started is gone — the server, the demo's load and a
 * Redis they started — nothing is left in any of their process groups, the
 * exit code is 143 or 130, and the last lines say how to start over.
 * Linux only: the process tree is read from /proc.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createTestEnv, eventually, waitExit, type TestEnv } from './support/env.ts';
import { freePort } from './support/infra.ts';

interface Proc { pid: number; ppid: number; pgid: number; cmd: string }

/** Every live process (zombies are dead: only their exit status is left). */
function processes(): Proc[] {
  return readdirSync('/proc').filter((d) => /^\d+$/.test(d)).flatMap((d) => {
    try {
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
      // "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses.
      const [state, ppid, pgid] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (state === 'Z') return [];
      const cmd = readFileSync(`/proc/${d}/cmdline`, 'utf8').replaceAll('\0', ' ').trim();
      return [{ pid: Number(d), ppid: Number(ppid), pgid: Number(pgid), cmd }];
    } catch {
      return []; // gone while we looked
    }
  });
}

/** The processes below `pid`, at any depth. */
function descendants(pid: number): Proc[] {
  const all = processes();
  const out: Proc[] = [];
  for (let parents = new Set([pid]); parents.size > 0; ) {
    const next = all.filter((p) => parents.has(p.ppid));
    out.push(...next);
    parents = new Set(next.map((p) => p.pid));
  }
  return out;
}

/** What is still alive of `procs`, or in their process groups or the group `pgid`. */
function leftOf(procs: Proc[], pgid: number): Proc[] {
  const pids = new Set(procs.map((p) => p.pid));
  const groups = new Set([pgid, ...procs.map((p) => p.pgid)]);
  return processes().filter((p) => pids.has(p.pid) || groups.has(p.pgid));
}

let t: TestEnv;
let dir: string;
const started: ChildProcess[] = [];
let seen: Proc[] = [];

beforeAll(async () => {
  t = await createTestEnv();
  dir = mkdtempSync(join(tmpdir(), 'gk-stop-'));
});
afterEach(() => {
  // A failed test leaves nothing running behind it.
  for (const p of [...started.map((c) => ({ pgid: c.pid! })), ...seen]) {
    try {
      process.kill(-p.pgid, 'SIGKILL');
    } catch {
      /* already gone */
    }
  }
  started.length = 0;
  seen = [];
});
afterAll(async () => {
  await t?.close();
  rmSync(dir, { recursive: true, force: true });
});

/** Run a script as a terminal would: the leader of its own process group. */
function run(script: string, env: Record<string, string>): { child: ChildProcess; output: () => string } {
  const { REDIS_URL: _ours, ...inherited } = process.env;
  const child = spawn('bash', [script], { env: { ...inherited, ...env }, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  started.push(child);
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  return { child, output: () => out };
}

const healthy = (port: number) => () => fetch(`http://127.0.0.1:${port}/healthz`).then((r) => r.status === 200, () => false);

describe('scripts stop cleanly', () => {
  it('up.sh: SIGTERM stops the server and the Redis it started, exits 143, says how to start over', async () => {
    const [port, redisPort] = [await freePort(), await freePort()];
    const { child, output } = run('scripts/up.sh', {
      DATABASE_URL: t.env.DATABASE_URL!, QUEUE_PREFIX: t.config.queuePrefix, PORT: String(port),
      UP_REDIS_PORT: String(redisPort), UP_REDIS_DIR: join(dir, 'redis'),
      GATEKEEPER_ADMIN_TOKEN: t.env.GATEKEEPER_ADMIN_TOKEN!, LOG_LEVEL: 'silent',
    });
    await eventually(healthy(port), Boolean, 45_000);
    seen = descendants(child.pid!);
    expect(seen.map((p) => p.cmd)).toEqual(expect.arrayContaining([
      expect.stringMatching(new RegExp(`^redis-server 127\\.0\\.0\\.1:${redisPort}`)),
      expect.stringMatching(/^node .*src\/main\.ts$/),
    ]));

    child.kill('SIGTERM');
    expect(await waitExit(child)).toBe(143);
    expect(leftOf(seen, child.pid!)).toEqual([]);
    expect(output()).toContain('SIGTERM: stopping');
    expect(output().trim().split('\n').at(-1)).toBe('To start over: bash scripts/up.sh reset');
  });

  it('demo.sh: Ctrl-C stops the server and the load mid-demo, exits 130, says how to wipe its state', async () => {
    const port = await freePort();
    const { child, output } = run('scripts/demo.sh', {
      REDIS_URL: t.env.REDIS_URL!, DATABASE_URL: t.env.DATABASE_URL!, QUEUE_PREFIX: t.config.queuePrefix,
      PORT: String(port), DATA_DIR: join(dir, 'demo'), LOG_LEVEL: 'silent',
    });
    // The load has reached the API: both children are running.
    await eventually(async () => output(), (o) => o.includes('demo: setting budgets'), 45_000);
    seen = descendants(child.pid!);
    expect(seen.map((p) => p.cmd)).toEqual(expect.arrayContaining([expect.stringMatching(/src\/main\.ts$/), expect.stringMatching(/scripts\/demo-load\.ts$/)]));

    // What a terminal does on Ctrl-C: SIGINT to its foreground process group, the script's.
    process.kill(-child.pid!, 'SIGINT');
    expect(await waitExit(child)).toBe(130);
    expect(leftOf(seen, child.pid!)).toEqual([]);
    expect(output()).toContain('SIGINT: stopping');
    expect(output().trim().split('\n').at(-1)).toBe('To wipe it now: bash scripts/demo.sh reset');
  });
});
