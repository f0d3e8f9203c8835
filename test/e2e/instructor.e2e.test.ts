/**
 * The instructor's evening before, through real processes and the real command line: accounts
 * made before the first start, `users init` run twice, a password reset, links regenerated and
 * revoked, login cards written, then `serve` — which must create an instructor and say where links
 * point. Every step checks that no login material was lost on the way.
 */
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { get } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Processes, waitFor, type Proc } from '../support/processes.js';
import { decodeSvgQr } from '../support/qr-decode.js';
import { freePort } from '../support/redis-server.js';

const procs = new Processes();
let dataDir: string;
let env: Record<string, string>;
let serverUrl: string;
let server: Proc | undefined;
/** user003's link before it was regenerated: must not sign in any more. */
let staleLink: string;

/** Runs `comfy-multi <args>` to the end; returns its output, failing on a non-zero exit. */
async function cli(args: string[], extraEnv: Record<string, string> = {}, okCode = 0): Promise<string> {
  const p = procs.run(`cli ${args.join(' ')}`, ['src/cli/index.ts', ...args], { ...env, ...extraEnv });
  const code = await p.exited;
  const out = p.log.join('');
  expect(code, out).toBe(okCode);
  return out;
}

/** The participants file as user → [password, link]. */
function participants(): Map<string, { password: string; link: string }> {
  const rows = readFileSync(join(dataDir, 'participants.txt'), 'utf8')
    .split('\n')
    .filter((l) => l && !l.startsWith('#'))
    .map((l) => l.split('\t'));
  return new Map(rows.map((r) => [r[0]!, { password: r[2]!, link: r[4]! }]));
}

function navigate(url: string, cookie: string): Promise<{ status: number; location: string | undefined }> {
  return new Promise((resolve, reject) => {
    get(url, { headers: { cookie, accept: 'text/html', 'sec-fetch-mode': 'navigate' } }, (res) => {
      res.resume();
      resolve({ status: res.statusCode ?? 0, location: res.headers.location });
    }).on('error', reject);
  });
}

async function signIn(link: string): Promise<Response> {
  return fetch(link.replace(/^http:\/\/[^/]+/, serverUrl), { redirect: 'manual' });
}

beforeAll(async () => {
  dataDir = mkdtempSync(join(tmpdir(), 'cm-e2e-instructor-'));
  const port = await freePort();
  serverUrl = `http://127.0.0.1:${port}`;
  env = {
    DATA_DIR: dataDir,
    HOST: '127.0.0.1',
    PORT: String(port),
    LOG_LEVEL: 'warn',
    PUBLIC_URL: serverUrl,
  };
});

afterEach((ctx) => {
  if (ctx.task.result?.state === 'fail') console.error(procs.logs());
});

afterAll(async () => {
  if (server) await procs.stop(server);
  await procs.killAll();
  rmSync(dataDir, { recursive: true, force: true });
});

describe('the instructor’s path on the command line', () => {
  it('`users add` before the first start prints the password and a sign-in link, and files both', async () => {
    const out = await cli(['users', 'add', 'alice']);
    const password = /with password: (\S+)/.exec(out)![1]!;
    const link = /sign-in link: (\S+)/.exec(out)![1]!;
    expect(link).toMatch(new RegExp(`^${serverUrl}/login/t/alice\\.`));
    expect(participants().get('alice')).toEqual({ password, link });
    expect(statSync(join(dataDir, 'participants.txt')).mode & 0o777).toBe(0o600);
  });

  it('`users init` is safe to run again: passwords and links are kept, never replaced by a note', async () => {
    const first = await cli(['users', 'init', '--count', '3', '--room', 'Room A'], { PUBLIC_URL: '' });
    // Without PUBLIC_URL it says where links point, and that participants cannot open it.
    expect(first).toMatch(
      /Links and login cards use http:\/\/localhost:\d+ \(default; PUBLIC_URL is not set\)/,
    );
    expect(first).toMatch(/WARNING: .*cannot use these links/);
    expect(first).toMatch(/created 3 participant accounts, kept 0/);
    // Links are rebuilt under the current PUBLIC_URL on every run.
    const again = await cli(['users', 'init', '--count', '3']);
    expect(again).toMatch(/created 0 participant accounts, kept 3 existing ones/);
    expect(again).toMatch(/made 0 new sign-in links/);
    const after = participants();
    for (const u of ['user001', 'user002', 'user003']) {
      expect(after.get(u)!.password).toMatch(/^[A-Za-z0-9]{20}$/);
      expect(after.get(u)!.link).toMatch(new RegExp(`^${serverUrl}/login/t/${u}\\.`));
    }
    expect(readFileSync(join(dataDir, 'participants.txt'), 'utf8')).toContain('user001\tRoom A\t');
    expect(readFileSync(join(dataDir, 'login-cards.html'), 'utf8')).toContain('data-user="user003"');
  });

  it('a reset reaches the file; a regenerated or revoked link stops working', async () => {
    const before = participants();
    const out = await cli(['users', 'reset-password', 'user002']);
    const pw = /new password of user002: (\S+)/.exec(out)![1]!;
    expect(participants().get('user002')).toEqual({ password: pw, link: before.get('user002')!.link });
    // …and the printable cards follow.
    expect(readFileSync(join(dataDir, 'login-cards.html'), 'utf8')).toContain(`<code>${pw}</code>`);
    staleLink = before.get('user003')!.link;
    const regen = await cli(['users', 'links', '--regenerate', 'user003']);
    const newLink = new RegExp(`^user003\\t(\\S+)$`, 'm').exec(regen)![1]!;
    expect(newLink).not.toBe(before.get('user003')!.link);
    expect(participants().get('user003')!.link).toBe(newLink);
    expect(participants().get('user001')).toEqual(before.get('user001'));
    await cli(['users', 'links', '--revoke', 'user001']);
    expect(participants().get('user001')).toEqual({ password: before.get('user001')!.password, link: '-' });
    await cli(['users', 'links', '--revoke'], {}, 2);
    // Replacing every printed card only when asked for explicitly.
    await cli(['users', 'links', '--regenerate'], {}, 2);
  });

  it('`serve` creates the missing instructor, says so, and the cards’ links sign participants in', async () => {
    server = procs.run('serve', ['src/cli/index.ts', 'serve'], env);
    await waitFor(async () => (await fetch(`${serverUrl}/health`)).ok, 30_000, 'the control plane');
    const log = await waitFor(
      () => {
        const s = server!.log.join('');
        return /Links and login cards use/.test(s) ? s : null;
      },
      10_000,
      'the PUBLIC_URL notice',
    );
    expect(log).toMatch(/No instructor account existed/);
    const adminPw = /Instructor account created: admin \/ (\S+)/.exec(log)![1]!;
    expect(readFileSync(join(dataDir, 'credentials.txt'), 'utf8')).toContain(`password: ${adminPw}`);
    expect(log).toContain(`Links and login cards use ${serverUrl} (PUBLIC_URL)`);

    // Cards written by the command line: one QR per participant, each decoding to its link.
    const cardsFile = join(dataDir, 'cards.html');
    await cli(['users', 'cards', '--out', cardsFile]);
    const html = readFileSync(cardsFile, 'utf8');
    const current = participants();
    const svgs = [
      ...html.matchAll(/data-user="([^"]+)">[\s\S]*?(<svg class="qr"[\s\S]*?<\/svg>|class="nolink")/g),
    ];
    expect(svgs.map((m) => m[1])).toEqual(['alice', 'user001', 'user002', 'user003']);
    for (const [, user, svg] of svgs) {
      if (user === 'user001')
        expect(svg).toBe('class="nolink"'); // revoked above
      else expect(decodeSvgQr(svg!)).toBe(current.get(user!)!.link);
    }

    const ok = await signIn(current.get('user002')!.link);
    expect(ok.status).toBe(303);
    expect(ok.headers.get('location')).toBe('/user002/');
    const cookie = ok.headers.get('set-cookie')!.split(';')[0]!;
    // As a browser navigating (Node's fetch always says `Sec-Fetch-Mode: cors`, so use node:http).
    const home = await navigate(`${serverUrl}/`, cookie);
    expect(home.location).toBe('/user002/');
    expect((await signIn(staleLink)).status).toBe(401);
    // The new admin can see the same cards on the dashboard's API.
    const basic = `Basic ${Buffer.from(`admin:${adminPw}`).toString('base64')}`;
    const cards = await fetch(`${serverUrl}/api/v1/users/cards`, { headers: { authorization: basic } });
    expect(cards.status).toBe(200);
    expect((await cards.text()).match(/<svg class="qr"/g)).toHaveLength(3);
  });
});
