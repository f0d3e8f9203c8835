/**
 * The small ComfyUI frontend extension every participant gets through `/extensions`: a banner
 * with their queue position, an estimated wait, whether a GPU is online, and instructor broadcast
 * messages (from `GET /<user>/comfy-multi/status`); on the first visit it also opens the
 * workshop's default workflow once. Plain browser JavaScript, no build step, no CDN.
 */
export const WORKSHOP_EXTENSION_PATH = '/extensions/comfy-multi/workshop.js';

export const WORKSHOP_EXTENSION_JS = String.raw`// comfy-multi workshop extension (served by the comfy-multi control plane)
const base = location.pathname.split('/').slice(0, -1).join('/');
const POLL_MS = 5000;

async function findApp() {
  for (let i = 0; i < 50; i++) {
    const a = window.comfyAPI && window.comfyAPI.app && window.comfyAPI.app.app;
    if (a) return a;
    await new Promise((r) => setTimeout(r, 100));
  }
  try {
    return (await import('../../scripts/app.js')).app;
  } catch (e) {
    return null;
  }
}

function minutes(seconds) {
  if (seconds == null) return null;
  if (seconds < 60) return 'under a minute';
  const m = Math.round(seconds / 60);
  return m === 1 ? 'about 1 minute' : 'about ' + m + ' minutes';
}

function describe(s) {
  const parts = [];
  if (!s.gpu || !s.gpu.online) {
    parts.push('No GPU is online right now: your prompts wait in the queue and start when one connects.');
  } else {
    parts.push('GPU online (' + s.gpu.workers + ')');
  }
  if (s.running > 0) parts.push('running: ' + s.running);
  if (s.pending > 0) {
    let p = 'waiting: ' + s.pending;
    if (s.position != null) p += s.position === 1 ? ' (yours is next)' : ' (next one is #' + s.position + ' in line)';
    const wait = minutes(s.estimatedWaitSeconds);
    if (wait && s.gpu && s.gpu.online) p += ', wait ' + wait;
    parts.push(p);
  }
  if (s.running === 0 && s.pending === 0 && s.gpu && s.gpu.online) parts.push('queue empty');
  return parts.join(' · ');
}

function makeBanner() {
  const box = document.createElement('div');
  box.id = 'comfy-multi-banner';
  box.setAttribute('role', 'status');
  box.style.cssText =
    'position:fixed;left:50%;bottom:10px;transform:translateX(-50%);z-index:10000;max-width:80vw;' +
    'font:12px/1.4 system-ui,sans-serif;color:#eee;pointer-events:none;text-align:center';
  const line = document.createElement('div');
  line.style.cssText = 'background:rgba(25,25,25,.88);padding:4px 12px;border-radius:8px;display:inline-block';
  const news = document.createElement('div');
  news.style.cssText =
    'background:#fde68a;color:#222;padding:6px 12px;border-radius:8px;margin-bottom:6px;display:none;' +
    'font-weight:600;pointer-events:auto';
  box.appendChild(news);
  box.appendChild(line);
  document.body.appendChild(box);
  return { line, news };
}

async function fetchStatus() {
  const r = await fetch(base + '/comfy-multi/status', { cache: 'no-store', credentials: 'same-origin' });
  if (!r.ok) throw new Error('status ' + r.status);
  return r.json();
}

async function openDefaultWorkflow(app, path) {
  // Let the frontend finish restoring its own state first, then open ours on top.
  for (let i = 0; i < 100 && !(app && app.graph); i++) await new Promise((r) => setTimeout(r, 100));
  await new Promise((r) => setTimeout(r, 1500));
  const r = await fetch(base + '/api/userdata/' + encodeURIComponent(path), { credentials: 'same-origin' });
  if (!r.ok) return;
  const wf = await r.json();
  const name = path.split('/').pop().replace(/\.json$/i, '');
  if (app && typeof app.loadGraphData === 'function') await app.loadGraphData(wf, true, true, name);
  await fetch(base + '/comfy-multi/default-workflow/opened', { method: 'POST', credentials: 'same-origin' });
}

let started = false;
async function start(app) {
  if (started) return;
  started = true;
  const ui = makeBanner();
  let openedDefault = false;
  const refresh = async () => {
    try {
      const s = await fetchStatus();
      ui.line.textContent = describe(s);
      if (s.broadcast && s.broadcast.message) {
        ui.news.textContent = s.broadcast.message;
        ui.news.style.display = 'block';
      } else {
        ui.news.style.display = 'none';
      }
      if (s.defaultWorkflow && !openedDefault) {
        openedDefault = true;
        openDefaultWorkflow(app, s.defaultWorkflow).catch((e) => console.warn('[comfy-multi] default workflow', e));
      }
    } catch (e) {
      ui.line.textContent = 'Workshop status unavailable (reconnecting...)';
    }
  };
  await refresh();
  setInterval(refresh, POLL_MS);
  const api = window.comfyAPI && window.comfyAPI.api && window.comfyAPI.api.api;
  if (api && typeof api.addEventListener === 'function') {
    let timer = null;
    api.addEventListener('status', () => {
      clearTimeout(timer);
      timer = setTimeout(refresh, 200);
    });
  }
}

const app = await findApp();
if (app && typeof app.registerExtension === 'function') {
  app.registerExtension({
    name: 'comfy-multi.workshop',
    async setup() {
      await start(app);
    },
  });
} else {
  start(null);
}
`;
