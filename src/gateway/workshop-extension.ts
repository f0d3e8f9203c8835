/**
 * The small ComfyUI frontend extension every participant gets through `/extensions`: a banner
 * with their queue position, an estimated wait, whether a GPU is online, and instructor broadcast
 * messages (from `GET /<user>/comfy-multi/status`); on the first visit it also opens the
 * workshop's default workflow once; a **Workshop → Upload my LoRA…** menu command uploads a
 * `.safetensors` file to the participant's own LoRAs (`POST /<user>/api/loras`) and refreshes the
 * loader lists. Plain browser JavaScript, no build step, no CDN.
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
  const starting = s.gpu && s.gpu.starting;
  const eta = starting && starting.etaSeconds != null ? ', about ' + starting.etaSeconds + ' s' : '';
  if ((!s.gpu || !s.gpu.online) && starting) {
    parts.push('GPU starting' + eta + ': your prompts wait in the queue and start when it connects.');
  } else if (!s.gpu || !s.gpu.online) {
    parts.push('No GPU is online right now: your prompts wait in the queue and start when one connects.');
  } else {
    parts.push('GPU online (' + s.gpu.workers + ')' + (starting ? ', another starting' + eta : ''));
  }
  if (s.running > 0) parts.push('running: ' + s.running);
  if (s.startingSoon > 0) parts.push('next on a GPU: ' + s.startingSoon);
  if (s.pending > 0) {
    let p = 'waiting: ' + s.pending;
    if (s.position != null) p += s.position === 1 ? ' (yours is next)' : ' (next one is #' + s.position + ' in line)';
    const wait = minutes(s.estimatedWaitSeconds);
    if (wait && s.gpu && s.gpu.online) p += ', wait ' + wait;
    parts.push(p);
  }
  if (s.running === 0 && !s.startingSoon && s.pending === 0 && s.gpu && s.gpu.online) parts.push('queue empty');
  return parts.join(' · ');
}

// The banner sits at the bottom centre of the graph canvas: above the bottom panel (logs, terminal)
// when that is open, narrow enough to leave the canvas controls at the bottom right free, and below
// the frontend's dialogs, menus and toasts (z-index 1050: over the canvas and minimap only).
const COLLAPSED_KEY = 'comfy-multi.banner.collapsed';
const DISMISSED_KEY = 'comfy-multi.broadcast.dismissed';

function stored(key) {
  try {
    return localStorage.getItem(key);
  } catch (e) {
    return null;
  }
}

function store(key, value) {
  try {
    if (value == null) localStorage.removeItem(key);
    else localStorage.setItem(key, value);
  } catch (e) {
    // private mode: remember for this page only
  }
}

function smallButton(label, title) {
  const b = document.createElement('button');
  b.type = 'button';
  b.textContent = label;
  b.title = title;
  b.setAttribute('aria-label', title);
  b.style.cssText =
    'pointer-events:auto;cursor:pointer;border:0;background:transparent;color:inherit;font:inherit;' +
    'padding:0 2px;margin-left:8px;opacity:.7;line-height:1';
  return b;
}

function makeBanner() {
  const box = document.createElement('div');
  box.id = 'comfy-multi-banner';
  box.setAttribute('role', 'status');
  box.style.cssText =
    'position:fixed;left:50%;bottom:10px;transform:translateX(-50%);z-index:1050;' +
    'width:max-content;max-width:max(300px,min(80vw,calc(100vw - 620px)));' +
    'font:12px/1.4 system-ui,sans-serif;color:#eee;pointer-events:none;text-align:center';
  const news = document.createElement('div');
  news.style.cssText =
    'background:#fde68a;color:#222;padding:6px 12px;border-radius:8px;margin-bottom:6px;display:none;' +
    'font-weight:600;pointer-events:auto;box-shadow:0 2px 8px rgba(0,0,0,.35)';
  const newsText = document.createElement('span');
  const newsClose = smallButton('\u00d7', 'Hide this message');
  news.appendChild(newsText);
  news.appendChild(newsClose);
  const bar = document.createElement('div');
  bar.style.cssText = 'background:rgba(25,25,25,.88);padding:4px 10px 4px 12px;border-radius:8px;display:inline-block';
  const line = document.createElement('span');
  const toggle = smallButton('\u2013', 'Hide the workshop status');
  bar.appendChild(line);
  bar.appendChild(toggle);
  box.appendChild(news);
  box.appendChild(bar);
  document.body.appendChild(box);

  let collapsed = stored(COLLAPSED_KEY) === '1';
  const showCollapsed = () => {
    line.style.display = collapsed ? 'none' : '';
    toggle.textContent = collapsed ? 'Workshop status \u25b4' : '\u2013';
    toggle.style.marginLeft = collapsed ? '0' : '8px';
    toggle.title = collapsed ? 'Show the workshop status' : 'Hide the workshop status';
    toggle.setAttribute('aria-label', toggle.title);
    bar.style.padding = collapsed ? '2px 8px' : '4px 10px 4px 12px';
  };
  toggle.addEventListener('click', () => {
    collapsed = !collapsed;
    store(COLLAPSED_KEY, collapsed ? '1' : null);
    showCollapsed();
  });
  showCollapsed();

  // A broadcast stays until the participant hides it; a new one shows again.
  let broadcastKey = null;
  newsClose.addEventListener('click', () => {
    store(DISMISSED_KEY, broadcastKey);
    news.style.display = 'none';
  });
  const setBroadcast = (b) => {
    if (b && b.message) {
      broadcastKey = (b.at || '') + '|' + b.message;
      newsText.textContent = b.message;
      news.style.display = stored(DISMISSED_KEY) === broadcastKey ? 'none' : 'block';
    } else {
      broadcastKey = null;
      news.style.display = 'none';
    }
  };

  // Stay above the bottom panel (logs, terminal) while it is open. Polling one element is cheaper
  // than observing the whole Vue app for changes.
  const place = () => {
    const panel = document.querySelector('.bottom-panel');
    const r = panel && panel.getBoundingClientRect();
    const open = r && r.height > 0 && r.width > 0 && r.top < window.innerHeight;
    box.style.bottom = (open ? Math.round(window.innerHeight - r.top) + 10 : 10) + 'px';
  };
  place();
  setInterval(place, 400);
  window.addEventListener('resize', place);
  return { line, setBroadcast };
}

async function fetchStatus() {
  const r = await fetch(base + '/comfy-multi/status', { cache: 'no-store', credentials: 'same-origin' });
  if (!r.ok) throw new Error('status ' + r.status);
  return r.json();
}

// On a first visit the frontend opens its stock default graph as "Unsaved Workflow" before we open
// the workshop's default workflow, which would leave two tabs. The stock one is closed once ours is
// open, but only while it is the only other tab, still the untouched stock graph and never edited.
function workflowStore(app) {
  const s = app && app.extensionManager && app.extensionManager.workflow;
  return s && Array.isArray(s.openWorkflows) && typeof s.closeWorkflow === 'function' ? s : null;
}

function nodeTypes(graph) {
  return ((graph && graph.nodes) || []).map((n) => n.type).sort().join(',');
}

function untouchedStockWorkflow(app) {
  const s = workflowStore(app);
  const stock = window.comfyAPI && window.comfyAPI.defaultGraph && window.comfyAPI.defaultGraph.defaultGraph;
  if (!s || !stock || s.openWorkflows.length !== 1) return null;
  const wf = s.activeWorkflow;
  if (!wf || wf.path !== s.openWorkflows[0].path || !wf.isTemporary || wf.isModified) return null;
  const tracker = wf.changeTracker;
  if (!tracker || (tracker.undoQueue && tracker.undoQueue.length > 0)) return null;
  return nodeTypes(tracker.activeState) === nodeTypes(stock) ? wf.path : null;
}

async function closeIfStillUntouched(app, path) {
  const s = workflowStore(app);
  if (!s || !path) return;
  const active = s.activeWorkflow;
  const wf = s.openWorkflows.find((w) => w.path === path);
  if (!wf || !active || active.path === path || s.openWorkflows.length !== 2 || wf.isModified) return;
  const tracker = wf.changeTracker;
  if (tracker && tracker.undoQueue && tracker.undoQueue.length > 0) return;
  await s.closeWorkflow(wf);
}

async function openDefaultWorkflow(app, path) {
  // Let the frontend finish restoring its own state first, then open ours on top.
  for (let i = 0; i < 100 && !(app && app.graph); i++) await new Promise((r) => setTimeout(r, 100));
  await new Promise((r) => setTimeout(r, 1500));
  const r = await fetch(base + '/api/userdata/' + encodeURIComponent(path), { credentials: 'same-origin' });
  if (!r.ok) return;
  const wf = await r.json();
  const name = path.split('/').pop().replace(/\.json$/i, '');
  if (app && typeof app.loadGraphData === 'function') {
    const stock = untouchedStockWorkflow(app);
    await app.loadGraphData(wf, true, true, name);
    await closeIfStillUntouched(app, stock);
  }
  await fetch(base + '/comfy-multi/default-workflow/opened', { method: 'POST', credentials: 'same-origin' });
}

// Participants' own LoRAs: a file picker, then POST /<user>/api/loras, then the loader lists are
// refreshed so the new name shows at once. The server checks the file; its message is shown as is.
const LORA_INPUT_ID = 'comfy-multi-lora-input';

function notify(app, severity, summary, detail) {
  const toast = app && app.extensionManager && app.extensionManager.toast;
  if (toast && typeof toast.add === 'function') toast.add({ severity, summary, detail, life: severity === 'error' ? 0 : 6000 });
  else window.alert(summary + (detail ? '\n' + detail : ''));
}

async function uploadLora(app, file) {
  const form = new FormData();
  form.append('file', file, file.name);
  let r;
  try {
    r = await fetch(base + '/api/loras', { method: 'POST', body: form, credentials: 'same-origin' });
  } catch (e) {
    notify(app, 'error', 'LoRA upload failed', 'The connection dropped: ' + e.message);
    return;
  }
  const body = await r.json().catch(() => null);
  if (!r.ok) {
    notify(app, 'error', 'LoRA not uploaded', (body && body.error && body.error.message) || 'HTTP ' + r.status);
    return;
  }
  notify(app, 'success', 'LoRA uploaded', body.name + ' is in your LoRA loaders now (only you see it).');
  try {
    const cmd = app && app.extensionManager && app.extensionManager.command;
    if (cmd && typeof cmd.execute === 'function') await cmd.execute('Comfy.RefreshNodeDefinitions');
    else if (app && typeof app.refreshComboInNodes === 'function') await app.refreshComboInNodes();
  } catch (e) {
    console.warn('[comfy-multi] refreshing the node lists', e);
  }
}

function pickLora(app) {
  let input = document.getElementById(LORA_INPUT_ID);
  if (!input) {
    input = document.createElement('input');
    input.type = 'file';
    input.id = LORA_INPUT_ID;
    input.accept = '.safetensors';
    input.style.display = 'none';
    input.addEventListener('change', () => {
      const file = input.files && input.files[0];
      input.value = '';
      if (file) uploadLora(app, file);
    });
    document.body.appendChild(input);
  }
  input.click();
}

const LORA_COMMAND = {
  id: 'ComfyMulti.UploadLora',
  label: 'Upload my LoRA…',
  icon: 'pi pi-upload',
  tooltip: 'Add a .safetensors LoRA to your own loader lists (only you see it)',
};

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
      ui.setBroadcast(s.broadcast);
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
    commands: [{ ...LORA_COMMAND, function: () => pickLora(app) }],
    menuCommands: [{ path: ['Workshop'], commands: [LORA_COMMAND.id] }],
    async setup() {
      await start(app);
    },
  });
} else {
  start(null);
}
`;
