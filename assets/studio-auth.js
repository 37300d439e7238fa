// Who the studio acts as, and the channel-scoped admin calls made on that authority.
//
// The stream key is read from the `Stream key` field into this closure and is sent only in the
// Authorization header (WHIP and /api/admin/channels/{channel}/...): never in a URL, never in
// localStorage or a cookie, never logged. A signed-in owner of the channel needs no key: the
// sign-in feature calls `auth.useSession()` (after GET /api/me says so), which hides the field
// and sends the session cookie instead.

export function createAuth(channel, { input, row }) {
  let key = '';
  let session = false;
  const refusedFns = new Set();

  const read = () => { key = input.value.trim(); };
  input.addEventListener('input', read);
  input.addEventListener('change', read);

  const auth = {
    channel,
    /** True when a request can carry some credential. */
    ready() { read(); return session || key !== ''; },
    /** Request headers with the credential added. */
    headers(extra = {}) {
      const h = Object.assign({}, extra);
      if (!session && key) h.Authorization = 'Bearer ' + key;
      return h;
    },
    /** Switches to the signed-in owner's session cookie and hides the key field. */
    useSession() {
      session = true;
      key = '';
      input.value = '';
      row.hidden = true;
    },
    /** Tells listeners (the key field's owner) that the credential was refused. */
    refused(why) { for (const fn of refusedFns) fn(why); },
    onRefused(fn) { refusedFns.add(fn); },
    focusKey() { if (!row.hidden) input.focus(); },

    /**
     * A channel-scoped admin request: `admin('chat/12', { method: 'DELETE' })`.
     * Resolves to { ok, status, data, error } and never throws.
     */
    async admin(path, { method = 'GET', body } = {}) {
      const url = '/api/admin/channels/' + encodeURIComponent(channel) + '/' + path;
      const init = {
        method,
        headers: auth.headers(body === undefined ? {} : { 'Content-Type': 'application/json' }),
        credentials: 'same-origin',
        cache: 'no-store',
      };
      if (body !== undefined) init.body = JSON.stringify(body);
      let r;
      try {
        r = await fetch(url, init);
      } catch (e) {
        return { ok: false, status: 0, data: null, error: 'network error' };
      }
      let data = null;
      try { data = await r.json(); } catch (e) { /* empty or not JSON */ }
      const error = r.ok ? null : (data && data.error) || 'refused (' + r.status + ')';
      if (r.status === 401 || r.status === 403) auth.refused(error);
      return { ok: r.ok, status: r.status, data, error };
    },
  };
  return auth;
}
