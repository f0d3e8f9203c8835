/** The login form. Self-contained (no CDN, no fonts): the workshop network may be closed. */
export function loginPage(opts: { next: string; error?: string }): string {
  const esc = (s: string) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>Sign in · comfy-multi</title>
<style>
  body{margin:0;min-height:100vh;display:grid;place-items:center;background:#15171c;color:#e8e8ea;font:16px/1.5 system-ui,sans-serif}
  form{background:#20232b;padding:2rem;border-radius:12px;width:min(22rem,90vw);box-shadow:0 8px 30px #0006}
  h1{font-size:1.3rem;margin:0 0 1rem}
  label{display:block;margin:.8rem 0 .2rem;font-size:.9rem;color:#b9bcc6}
  input{width:100%;box-sizing:border-box;padding:.6rem;border-radius:6px;border:1px solid #3a3e4a;background:#15171c;color:inherit;font-size:1rem}
  input:focus,button:focus{outline:2px solid #6ea8fe;outline-offset:2px}
  button{margin-top:1.2rem;width:100%;padding:.7rem;border:0;border-radius:6px;background:#3b6fd8;color:#fff;font-size:1rem;cursor:pointer}
  .error{background:#5a1f26;color:#ffd7dc;padding:.5rem .7rem;border-radius:6px;margin-bottom:.5rem}
</style></head>
<body><form method="post" action="/login" id="login">
<h1>Sign in to the workshop</h1>
${opts.error ? `<p class="error" role="alert">${esc(opts.error)}</p>` : ''}
<input type="hidden" name="next" value="${esc(opts.next)}">
<label for="user">User name</label><input id="user" name="user" autocomplete="username" required autofocus>
<label for="password">Password</label><input id="password" name="password" type="password" autocomplete="current-password" required>
<button type="submit">Sign in</button>
</form>
<script>
// Login links carry the credentials in the fragment (#user=…&password=…), which browsers never
// send to the server, so they stay out of every log. Fill the form, forget the fragment, submit.
(function () {
  var h = new URLSearchParams(location.hash.slice(1));
  if (h.get('user') && h.get('password')) {
    document.getElementById('user').value = h.get('user');
    document.getElementById('password').value = h.get('password');
    history.replaceState(null, '', location.pathname + location.search);
    document.getElementById('login').submit();
  }
})();
</script></body></html>`;
}
