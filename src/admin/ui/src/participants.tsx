import type { ParticipantRow } from '../../view-types.js';
import { action } from './api.js';
import type { Ctx } from './ctx.js';
import { ago, fullTime, shortDuration } from './format.js';
import { Empty, Section } from './section.js';

/** 1.2 GB, 350 MB, 12 KB. */
function bytes(n: number): string {
  for (const [unit, name] of [
    [1024 ** 3, 'GB'],
    [1024 ** 2, 'MB'],
    [1024, 'KB'],
  ] as const)
    if (n >= unit) return `${Number((n / unit).toFixed(1))} ${name}`;
  return `${n} B`;
}

function limitsText(p: ParticipantRow, ctx: Ctx): string {
  const d = ctx.s.queue.limits;
  const waiting = p.limits?.maxPendingPerUser ?? d.maxPendingPerUser;
  const running = p.limits?.maxRunningPerUser ?? d.maxRunningPerUser;
  return `${waiting} waiting, ${running} running`;
}

function Row({ ctx, p }: { ctx: Ctx; p: ParticipantRow }) {
  const reset = () =>
    ctx.confirm({
      title: `Reset the password of ${p.user}?`,
      body: (
        <p>
          A new password is made and shown to you once. {p.user} is signed out everywhere and signs in again
          with the new one; their files and jobs stay.
        </p>
      ),
      confirmLabel: 'Reset password',
      danger: true,
      run: async () => {
        const r = await action<{ user: string; password: string }>(
          `/users/${encodeURIComponent(p.user)}/reset-password`,
        );
        ctx.open({ kind: 'password', user: r.user, password: r.password });
      },
    });
  return (
    <tr>
      <td>
        <b>{p.user}</b>
        {p.role === 'instructor' ? <span class="tag">instructor</span> : null}
        {p.limits ? (
          <span class="tag tag-front" title={`Own limits: at most ${limitsText(p, ctx)}`}>
            own limits
          </span>
        ) : null}
        {p.priority ? (
          <span class="tag tag-front" title={`All jobs of ${p.user} have ${p.priority} priority`}>
            {p.priority} priority
          </span>
        ) : null}
        {p.loras ? (
          <span
            class={p.loras.bytes >= p.loras.quotaBytes * 0.9 ? 'tag tag-front' : 'tag'}
            title={`${p.loras.count} own LoRA(s): ${bytes(p.loras.bytes)} of ${bytes(p.loras.quotaBytes)} (LORA_QUOTA)`}
          >
            LoRAs {bytes(p.loras.bytes)} / {bytes(p.loras.quotaBytes)}
          </span>
        ) : null}
      </td>
      <td>
        {p.online > 0 ? (
          <span class="online" title={`${p.online} ComfyUI tab(s) open`}>
            <span class="dot dot-on" aria-hidden="true" />
            online{p.online > 1 ? ` (${p.online})` : ''}
          </span>
        ) : (
          <span class="muted">
            <span class="dot" aria-hidden="true" />
            offline
          </span>
        )}
      </td>
      <td class="num">{p.pending || <span class="muted">0</span>}</td>
      <td class="num">{p.running || <span class="muted">0</span>}</td>
      <td class="num">{p.next || <span class="muted">0</span>}</td>
      <td class="num">{p.completed || <span class="muted">0</span>}</td>
      <td class="num">{p.failed ? <span class="bad">{p.failed}</span> : <span class="muted">0</span>}</td>
      <td class="num">{p.gpuSeconds > 0 ? shortDuration(p.gpuSeconds) : <span class="muted">—</span>}</td>
      <td title={fullTime(p.lastActivityAt)}>
        {p.lastActivityAt ? ago(p.lastActivityAt, ctx.now) : <span class="muted">—</span>}
      </td>
      <td class="actions">
        <button
          type="button"
          class="btn btn-small"
          aria-label={`Limits of ${p.user}: at most ${limitsText(p, ctx)}. Change`}
          onClick={() => ctx.open({ kind: 'user-limits', user: p.user })}
        >
          Limits
        </button>
        <button
          type="button"
          class="btn btn-small"
          aria-label={`Priority of ${p.user}: ${p.priority ?? 'normal'}. Change`}
          onClick={() => ctx.open({ kind: 'user-priority', user: p.user })}
        >
          Priority
        </button>
        <button
          type="button"
          class="btn btn-small"
          onClick={reset}
          aria-label={`Reset the password of ${p.user}`}
          disabled={p.role !== 'participant'}
        >
          Reset password
        </button>
      </td>
    </tr>
  );
}

export function ParticipantsSection({ ctx }: { ctx: Ctx }) {
  const list = ctx.s.participants;
  const online = list.filter((p) => p.online > 0).length;
  return (
    <Section id="participants" title="Participants" count={`${online} of ${list.length} online`}>
      {list.length === 0 ? (
        <Empty title="No participant accounts yet">
          <p>
            Create them on the server with <code>comfy-multi users init --count 20</code>; it writes their
            passwords and sign-in links to <code>data/participants.txt</code> and printable login cards.
          </p>
        </Empty>
      ) : (
        <div class="table-wrap">
          <p>
            <a href="/api/v1/users/cards" target="_blank" rel="noopener">
              Login cards
            </a>{' '}
            (printable: name, password while it is new, QR code of the sign-in link)
          </p>
          <table class="table">
            <caption class="sr-only">Participants and their jobs</caption>
            <thead>
              <tr>
                <th scope="col">User</th>
                <th scope="col">Now</th>
                <th scope="col" class="num">
                  <abbr title="Jobs waiting">Wait</abbr>
                </th>
                <th scope="col" class="num">
                  <abbr title="Jobs running in ComfyUI">Run</abbr>
                </th>
                <th scope="col" class="num">
                  <abbr title="Jobs sent ahead to a GPU, not started yet">Next</abbr>
                </th>
                <th scope="col" class="num">
                  <abbr title="Jobs completed">Done</abbr>
                </th>
                <th scope="col" class="num">
                  <abbr title="Jobs failed">Fail</abbr>
                </th>
                <th scope="col" class="num">
                  GPU time
                </th>
                <th scope="col">Last active</th>
                <th scope="col">
                  <span class="sr-only">Actions</span>
                </th>
              </tr>
            </thead>
            <tbody>
              {list.map((p) => (
                <Row key={p.user} ctx={ctx} p={p} />
              ))}
            </tbody>
          </table>
        </div>
      )}
    </Section>
  );
}
