/**
 * Where to send a browser after it signed in: only a path on this site. Browsers are lenient with
 * `Location`: they drop tabs and newlines (`/\t/evil.example` becomes `//evil.example`), treat `\`
 * as `/`, and ignore leading control characters and spaces, so a loose check such as "starts with
 * one slash" is an open redirect. This accepts only printable ASCII that is a path starting with a
 * single `/`, with no `//`, no backslash, no whitespace or control characters, also once
 * percent-decoded (up to three times, against double encoding), and that resolves to our own
 * origin. Anything else returns null (the caller picks the default landing page).
 */
const BASE = 'http://next.invalid';
/** RFC 3986 path, query and fragment characters, percent escapes included; nothing else. */
const URL_CHARS = /^[A-Za-z0-9\-._~!$&'()*+,;=:@%/?#]*$/;
const FORBIDDEN =
  // eslint-disable-next-line no-control-regex -- control characters are exactly what this refuses
  /[\\\s\u0000-\u001f\u007f-\u009f\u00ad\u061c\u180e\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff]/u;

export function safeNextPath(next: unknown): string | null {
  if (typeof next !== 'string' || next.length === 0 || next.length > 2048) return null;
  if (!URL_CHARS.test(next)) return null;
  let form = next;
  for (let i = 0; i < 4; i++) {
    if (!form.startsWith('/') || form.startsWith('//') || form.includes('//') || FORBIDDEN.test(form)) {
      return null;
    }
    if (!form.includes('%')) break;
    let decoded: string;
    try {
      decoded = decodeURIComponent(form);
    } catch {
      return null;
    }
    if (decoded === form) break;
    if (i === 3) return null;
    form = decoded;
  }
  try {
    const u = new URL(next, BASE);
    if (u.origin !== BASE) return null;
  } catch {
    return null;
  }
  return next;
}
