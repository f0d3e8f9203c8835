import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { openSqliteStore } from '../store/sqlite/sqlite-store.js';
import { CONFORMANCE_DEFAULTS } from '../store/store.conformance.js';
import type { JobStore } from '../store/types.js';
import { AccountService } from './account-service.js';
import { updateLoginMaterial } from './login-material-update.js';
import {
  readParticipantsFile,
  signInLink,
  writeParticipantsFile,
  type ParticipantEntry,
} from './login-material.js';
import { SignInTokens } from './sign-in-tokens.js';

const BASE = 'https://workshop.example.org';
let dir: string;
let file: string;
let store: JobStore;
let accounts: AccountService;

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'cm-material-'));
  file = join(dir, 'participants.txt');
  store = await openSqliteStore({
    path: join(dir, 'state.db'),
    defaults: structuredClone(CONFORMANCE_DEFAULTS),
  });
  accounts = new AccountService(store);
});

afterEach(async () => {
  await store.close();
  rmSync(dir, { recursive: true, force: true });
});

const pw = (name: string, password: string, version = 1) => new Map([[name, { password, version }]]);

describe('participants file format', () => {
  it('round-trips any entries, written with mode 0600 (property)', () => {
    const entryArb = fc.record({
      user: fc.stringMatching(/^[a-z0-9][a-z0-9_-]{0,31}$/),
      room: fc.stringMatching(/^[^\t\r\n]{0,20}$/).filter((r) => r.trim() === r && r !== '-'),
      password: fc.option(fc.stringMatching(/^[A-Za-z0-9]{8,20}$/), { nil: null }),
      passwordVersion: fc.option(fc.integer({ min: 1, max: 1000 }), { nil: null }),
      token: fc.option(fc.stringMatching(/^[a-z0-9]{1,8}\.[A-Za-z0-9_-]{43}$/), { nil: null }),
    });
    fc.assert(
      fc.property(fc.uniqueArray(entryArb, { selector: (e) => e.user, maxLength: 8 }), (entries) => {
        writeParticipantsFile(file, entries, BASE);
        const back = readParticipantsFile(file);
        const sorted = [...entries].sort((a, b) => (a.user < b.user ? -1 : 1));
        expect([...back.values()].sort((a, b) => (a.user < b.user ? -1 : 1))).toEqual(sorted);
      }),
      { numRuns: 50 },
    );
    expect(statSync(file).mode & 0o777).toBe(0o600);
  });

  it('reads the older format, keeping the passwords it holds', () => {
    writeFileSync(
      file,
      '# user\tpassword\tlogin link (keep this file private)\n' +
        'user001\tabcDEF234\thttp://x/login?next=%2Fuser001%2F#user=user001&password=abcDEF234\n' +
        'user002\t(already existed; password unchanged)\n',
    );
    const e = readParticipantsFile(file);
    expect(e.get('user001')).toMatchObject({ password: 'abcDEF234', passwordVersion: null, token: null });
    expect(e.get('user002')).toMatchObject({ password: null, token: null });
  });
});

describe('updateLoginMaterial', () => {
  it('never loses a current password or link when run again', async () => {
    const a = await accounts.create('user001', 'participant');
    await accounts.create('user002', 'participant');
    const first = await updateLoginMaterial(store, file, BASE, {
      passwords: pw('user001', a.password),
      issue: 'missing',
    });
    expect(first.issued).toEqual(['user001', 'user002']);
    const before = readFileSync(file, 'utf8');
    const again = await updateLoginMaterial(store, file, BASE, { issue: 'missing' });
    expect(again.issued).toEqual([]);
    expect(readFileSync(file, 'utf8')).toBe(before);
    const entry = readParticipantsFile(file).get('user001')!;
    expect(entry.password).toBe(a.password);
    expect((await new SignInTokens(store).resolve(entry.token!))?.name).toBe('user001');
  });

  it('upgrades an older file: a password still current is kept (checked with bcrypt), a changed one dropped', async () => {
    const a = await accounts.create('user001', 'participant');
    await accounts.create('user002', 'participant');
    writeFileSync(file, `user001\t${a.password}\tx\nuser002\twrong-password\tx\n`);
    const r = await updateLoginMaterial(store, file, BASE, { issue: 'missing' });
    expect(r.entries.map((e) => [e.user, e.password, e.passwordVersion])).toEqual([
      ['user001', a.password, 1],
      ['user002', null, null],
    ]);
  });

  it('a reset replaces the password and keeps the link; a reset elsewhere hides the stale one', async () => {
    const a = await accounts.create('user001', 'participant');
    await updateLoginMaterial(store, file, BASE, { passwords: pw('user001', a.password), issue: 'missing' });
    const token = readParticipantsFile(file).get('user001')!.token;
    const reset = await accounts.resetPassword('user001');
    await updateLoginMaterial(store, file, BASE, { passwords: pw('user001', reset.password, 2) });
    expect(readParticipantsFile(file).get('user001')).toMatchObject({ password: reset.password, token });
    await accounts.resetPassword('user001', 'chosen-elsewhere');
    await updateLoginMaterial(store, file, BASE);
    expect(readParticipantsFile(file).get('user001')).toMatchObject({ password: null, token });
  });

  it('regenerate and revoke end the old link; removed accounts leave the file', async () => {
    await accounts.create('user001', 'participant');
    await accounts.create('user002', 'participant');
    await updateLoginMaterial(store, file, BASE, { issue: 'missing' });
    const old = readParticipantsFile(file).get('user001')!.token!;
    await updateLoginMaterial(store, file, BASE, { issue: ['user001'] });
    const fresh = readParticipantsFile(file).get('user001')!.token!;
    expect(fresh).not.toBe(old);
    const tokens = new SignInTokens(store);
    expect(await tokens.resolve(old)).toBeNull();
    expect(readFileSync(file, 'utf8')).toContain(signInLink(BASE, fresh));
    const r = await updateLoginMaterial(store, file, BASE, { revoke: ['user001'] });
    expect(r.revoked).toEqual(['user001']);
    expect(await tokens.resolve(fresh)).toBeNull();
    expect(readParticipantsFile(file).get('user001')!.token).toBeNull();
    await accounts.remove('user002');
    await updateLoginMaterial(store, file, BASE);
    expect(readParticipantsFile(file).has('user002')).toBe(false);
  });

  it('does not replace a link made elsewhere without being asked, and says so', async () => {
    const { account } = await accounts.create('user001', 'participant');
    await new SignInTokens(store).issue(account);
    const r = await updateLoginMaterial(store, file, BASE, { issue: 'missing' });
    expect(r.issued).toEqual([]);
    expect(r.linkNotHere).toEqual(['user001']);
  });

  it('keeps rooms, lists only participants, refuses links for instructors', async () => {
    await accounts.create('user001', 'participant');
    await accounts.create('teacher', 'instructor');
    await updateLoginMaterial(store, file, BASE, {
      rooms: new Map([['user001', 'Room A']]),
      issue: 'missing',
    });
    const r = await updateLoginMaterial(store, file, BASE);
    expect(r.entries.map((e: ParticipantEntry) => [e.user, e.room])).toEqual([['user001', 'Room A']]);
    await expect(updateLoginMaterial(store, file, BASE, { issue: ['teacher'] })).rejects.toThrow(
      /instructor/,
    );
  });
});
