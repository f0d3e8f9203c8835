import Database from 'better-sqlite3';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AppError } from '../../errors.js';
import { CONFORMANCE_DEFAULTS, runStoreConformance } from '../store.conformance.js';
import { SCHEMA_VERSION } from './schema.js';
import { openSqliteStore, type SqliteStore } from './sqlite-store.js';

runStoreConformance('sqlite', async (defaults) => {
  const dir = mkdtempSync(join(tmpdir(), 'cm-sqlite-'));
  const path = join(dir, 'state.db');
  let store = await openSqliteStore({ path, defaults });
  return {
    store,
    reopen: async () => {
      await store.close();
      store = await openSqliteStore({ path, defaults });
      return store;
    },
    cleanup: async () => {
      // Every conformance test also checks that user_state still matches the jobs it summarises.
      const problems = store.checkConsistency();
      await store.close();
      rmSync(dir, { recursive: true, force: true });
      expect(problems).toEqual([]);
    },
  };
});

describe('SqliteStore specifics', () => {
  let dir: string;
  let path: string;
  const opened: SqliteStore[] = [];
  const open = async (busyTimeoutMs?: number) => {
    const s = await openSqliteStore({
      path,
      defaults: CONFORMANCE_DEFAULTS,
      ...(busyTimeoutMs ? { busyTimeoutMs } : {}),
    });
    opened.push(s);
    return s;
  };
  const prompt = { '1': { class_type: 'KSampler', inputs: {} } };

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'cm-sqlite-x-'));
    path = join(dir, 'sub', 'state.db');
  });

  afterEach(async () => {
    for (const s of opened.splice(0)) await s.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('creates the database, WAL and shared-memory files with mode 0600', async () => {
    const store = await open();
    await store.enqueue({ user: 'a', prompt }, 1);
    for (const f of [path, `${path}-wal`, `${path}-shm`]) expect(statSync(f).mode & 0o777).toBe(0o600);
  });

  it('runs in WAL mode with the schema at the current version', async () => {
    await open();
    const db = new Database(path, { readonly: true });
    try {
      expect(db.pragma('journal_mode', { simple: true })).toBe('wal');
      expect(db.pragma('user_version', { simple: true })).toBe(SCHEMA_VERSION);
    } finally {
      db.close();
    }
  });

  it('migrates an empty file, and reopening does not migrate again', async () => {
    rmSync(join(dir, 'sub'), { recursive: true, force: true });
    const flat = join(dir, 'empty.db');
    writeFileSync(flat, '');
    path = flat;
    const s1 = await open();
    const job = await s1.enqueue({ user: 'a', prompt }, 1);
    await s1.close();
    const s2 = await open();
    expect(await s2.getJob(job.id)).toEqual(job);
    const db = new Database(path, { readonly: true });
    try {
      expect(db.pragma('user_version', { simple: true })).toBe(SCHEMA_VERSION);
      const tables = db
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        .pluck()
        .all();
      expect(tables).toEqual(
        expect.arrayContaining([
          'jobs',
          'job_data',
          'user_state',
          'meta',
          'accounts',
          'worker_tokens',
          'blobs',
        ]),
      );
    } finally {
      db.close();
    }
  });

  it('refuses a database written by a newer schema version', async () => {
    (await open()).close();
    const db = new Database(path);
    db.pragma(`user_version = ${SCHEMA_VERSION + 1}`);
    db.close();
    await expect(open()).rejects.toThrow(/newer than this program supports/);
  });

  it('jobs read back behave as plain objects although the prompt is parsed lazily', async () => {
    const store = await open();
    const p = { '1': { class_type: 'KSampler', inputs: { seed: 5, text: 'ünï' } } };
    const enq = await store.enqueue({ user: 'a', prompt: p, metadata: { m: 1 } }, 1);
    const got = (await store.getJob(enq.id))!;
    expect(got).toEqual(enq);
    expect(Object.keys(got)).toEqual(Object.keys(enq));
    expect(Object.keys(got).indexOf('prompt')).toBe(6);
    expect(got.prompt).toEqual(p);
    expect(got.prompt).toBe(got.prompt); // parsed once
    expect({ ...got }.prompt).toEqual(p);
    expect(structuredClone(got).prompt).toEqual(p);
    expect(JSON.parse(JSON.stringify(got)).prompt).toEqual(p);
    const other = { '2': { class_type: 'X', inputs: {} } };
    got.prompt = other;
    expect(got.prompt).toBe(other);
    expect((await store.getJob(enq.id))!.prompt).toEqual(p);
  });

  it('prunes a long history in several transactions, and every counter follows', async () => {
    const store = await open();
    await store.updateSettings({ limits: { maxPendingPerUser: 100_000 } });
    const n = 4500; // more than two chunks
    for (let i = 0; i < n; i++) {
      const job = await store.enqueue({ user: i % 3 === 0 ? 'a' : 'b', prompt }, 1000 + i);
      await store.cancel(job.id, 1000 + i);
    }
    const keep = await store.enqueue({ user: 'a', prompt }, 10_000);
    await store.cancel(keep.id, 10_000);
    expect(await store.pruneHistory(9000)).toBe(n);
    expect((await store.countByStatus()).cancelled).toBe(1);
    expect((await store.userCounters()).map((u) => [u.user, u.cancelled])).toEqual([['a', 1]]);
    expect(await store.getJob(keep.id)).not.toBeNull();
  });

  it('checkpoints the WAL into the database file from its own thread, and stops on close', async () => {
    const store = await open();
    const ids: string[] = [];
    for (let i = 0; i < 20; i++) ids.push((await store.enqueue({ user: `u${i % 3}`, prompt }, 1000 + i)).id);
    // The main connection's automatic checkpoint is off (wal_autocheckpoint = 0): these jobs reach
    // the main file only through the checkpoint thread.
    const copy = join(dir, 'copy.db');
    const deadline = Date.now() + 10_000;
    let found = 0;
    while (Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 200));
      // The main file alone, without its WAL: what a checkpoint has written there.
      writeFileSync(copy, readFileSync(path));
      const db = new Database(copy, { readonly: true });
      try {
        found = (db.prepare('SELECT count(*) AS n FROM jobs').get() as { n: number }).n;
      } catch {
        found = 0; // the schema itself may still be in the WAL only
      } finally {
        db.close();
      }
      if (found === ids.length) break;
    }
    expect(found).toBe(ids.length);
    await store.close();
    opened.splice(opened.indexOf(store), 1);
    // Its connection is closed too: the last one out removes the WAL.
    expect(existsSync(`${path}-wal`)).toBe(false);
  });

  it('works in memory', async () => {
    const s = await openSqliteStore({ path: ':memory:', defaults: CONFORMANCE_DEFAULTS });
    opened.push(s);
    const j = await s.enqueue({ user: 'a', prompt }, 1);
    expect(
      (
        await s.claim({
          workerId: 'w',
          warmModels: [],
          leaseMs: 10,
          now: 2,
          affinity: { window: 1, maxSkips: 0 },
        })
      )?.id,
    ).toBe(j.id);
  });

  it('reports a held write lock as STORE_UNAVAILABLE after busy_timeout', async () => {
    const store = await open(50);
    const other = new Database(path);
    try {
      other.exec('BEGIN IMMEDIATE');
      const err = await store.enqueue({ user: 'a', prompt }, 1).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(AppError);
      expect((err as AppError).code).toBe('STORE_UNAVAILABLE');
      // Reads still work in WAL mode while another connection writes.
      expect(await store.countByStatus()).toMatchObject({ pending: 0 });
      other.exec('ROLLBACK');
      await store.enqueue({ user: 'a', prompt }, 1);
    } finally {
      other.close();
    }
  });

  it(
    'several processes enqueueing and claiming on one file never claim a job twice',
    { timeout: 120_000 },
    async () => {
      const store = await open();
      await store.updateSettings({ limits: { maxPendingPerUser: 1000, maxRunningPerUser: 1 } });
      const total = 1500;
      const ids = new Set<string>();
      for (let i = 0; i < total; i++) ids.add((await store.enqueue({ user: `u${i % 150}`, prompt }, i)).id);

      const PER_PROC = 50;
      const script = join(dir, 'claimer.mts');
      const storeUrl = pathToFileURL(resolve('src/store/sqlite/sqlite-store.ts')).href;
      writeFileSync(
        script,
        `import { createInterface } from 'node:readline';
import { openSqliteStore } from ${JSON.stringify(storeUrl)};
const [path, name] = process.argv.slice(2);
const defaults = ${JSON.stringify(CONFORMANCE_DEFAULTS)};
const store = await openSqliteStore({ path, defaults, busyTimeoutMs: 20000 });
process.stdout.write('ready\\n');
await new Promise((r) => createInterface({ input: process.stdin }).once('line', r));
const claimed = [];
const enqueued = [];
let now = 10_000;
for (let i = 0; ; i++) {
  // Enqueue a job of our own now and then, while the others claim.
  if (enqueued.length < ${PER_PROC} && i % 10 === 0) {
    enqueued.push((await store.enqueue({ user: name, prompt: { '1': { class_type: 'X', inputs: { i } } } }, ++now)).id);
  }
  const j = await store.claim({ workerId: name, warmModels: [], leaseMs: 60000, now: ++now, affinity: { window: 1, maxSkips: 0 } });
  if (!j) {
    if (enqueued.length < ${PER_PROC}) continue;
    break;
  }
  claimed.push(j.id);
  const r = await store.complete(j.id, j.attempts, [], ++now);
  if (!r.ok || r.duplicate) throw new Error('complete failed: ' + JSON.stringify(r));
}
await store.close();
process.stdout.write(JSON.stringify({ claimed, enqueued }) + '\\n');
`,
      );

      const procs = Array.from({ length: 4 }, (_, i) => {
        const child = spawn(process.execPath, ['--import', 'tsx', script, path, `proc-${i}`], {
          cwd: process.cwd(),
          stdio: ['pipe', 'pipe', 'pipe'],
        });
        let out = '';
        let err = '';
        child.stdout.on('data', (d: Buffer) => (out += d.toString()));
        child.stderr.on('data', (d: Buffer) => (err += d.toString()));
        const ready = new Promise<void>((res, rej) => {
          const t = setInterval(() => {
            if (out.startsWith('ready\n')) {
              clearInterval(t);
              res();
            }
          }, 10);
          child.once('exit', (code) => {
            clearInterval(t);
            rej(new Error(`claimer exited early (${code}): ${err}`));
          });
        });
        const done = new Promise<{ claimed: string[]; enqueued: string[] }>((res, rej) =>
          child.once('exit', (code) =>
            code === 0
              ? res(JSON.parse(out.slice('ready\n'.length)) as { claimed: string[]; enqueued: string[] })
              : rej(new Error(`claimer ${code}: ${err}`)),
          ),
        );
        done.catch(() => undefined); // reported through `ready` when the process dies early
        return { child, ready, done };
      });
      await Promise.all(procs.map((p) => p.ready));
      for (const p of procs) p.child.stdin.end('go\n');
      const results = await Promise.all(procs.map((p) => p.done));

      for (const r of results) {
        expect(r.enqueued).toHaveLength(PER_PROC);
        for (const id of r.enqueued) ids.add(id);
      }
      const all = results.flatMap((r) => r.claimed);
      const everything = ids.size;
      expect(everything).toBe(total + 4 * PER_PROC);
      expect(all).toHaveLength(everything);
      expect(new Set(all)).toEqual(ids);
      // The claims really interleaved. (Not necessarily all four: SQLite's busy handler backs off, so
      // a process can lose every race for a while.)
      expect(results.filter((r) => r.claimed.length > 0).length).toBeGreaterThanOrEqual(2);
      expect(await store.countByStatus()).toEqual({
        pending: 0,
        running: 0,
        completed: everything,
        failed: 0,
        cancelled: 0,
      });
      // Seqs stayed unique and dense across processes.
      const seqs = (await store.listJobs({ limit: 500, order: 'asc' })).jobs.map((j) => j.seq);
      expect(seqs).toEqual(Array.from({ length: 500 }, (_, i) => i + 1));
      const last = (await store.listJobs({ limit: 1 })).jobs[0];
      expect(last?.seq).toBe(everything);
      expect(store.checkConsistency()).toEqual([]);
    },
  );
});
