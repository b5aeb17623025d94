// Agent desktop: draws the desktop the host pushes over the WebSocket and
// sends the agent's commands back. The state lives in the host: every
// (re)connection starts from a full snapshot, so a reload or a dropped
// connection loses nothing. No framework, no external code; every piece of
// data is written with textContent (never as HTML).
'use strict';

(function () {
  // ------------------------------------------------------------------ state

  const S = {
    seq: 0,
    agent: null,
    calls: new Map(), // call_id -> call (insertion order = arrival order)
    sessions: new Map(), // session_id -> session
    plugins: [],
    reasons: [],
    dispositions: [],
    offset: 0, // server clock - browser clock, ms
    instance: '',
    connected: false,
    typing: new Map(), // call_id -> {state, who, at}: the far end's chat state
  };

  const STATE_LABEL = {
    Null: 'Ended',
    Initiated: 'Dialing',
    Alerting: 'Ringing',
    Connected: 'Connected',
    Held: 'On hold',
    Queued: 'Queued',
    Failed: 'Failed',
  };
  const WORK_LABEL = {
    Offered: 'Offered',
    Accepted: 'Accepted',
    Active: 'Active',
    Wrapping: 'Wrap-up',
    Completed: 'Completed',
    Rejected: 'Rejected',
    Missed: 'Missed',
    Canceled: 'Canceled',
  };
  const LOG_MAX = 200;
  // Lines kept per chat transcript: the desktop's limit (sdk::chat).
  const TRANSCRIPT_LINES = 1000;
  // A "typing" notice older than this is stale (the far end went quiet).
  const TYPING_STALE_MS = 30000;
  // The agent's own typing: "composing" at most this often, "paused" after
  // this long without a keystroke.
  const TYPING_EVERY_MS = 10000;
  const TYPING_PAUSE_MS = 5000;
  // The audit trail of submitted commands duplicates their outcome lines.
  const LOG_HIDDEN = new Set(['CommandRequested']);
  let lastLoggedSeq = 0; // the newest event in the log
  /** Logs a desktop event once (a snapshot's recent events and the live
   *  stream overlap). */
  function logEvent(ev) {
    if (ev.seq <= lastLoggedSeq) return;
    lastLoggedSeq = ev.seq;
    if (!hiddenInLog(ev)) log(ev.time_ms, ev.event, describe(ev), logClass(ev));
  }

  /** Audit lines and the agent's own typing notices stay out of the log. */
  const hiddenInLog = (ev) =>
    LOG_HIDDEN.has(ev.event) || (ev.event === 'CommandCompleted' && ev.attrs && ev.attrs.command === 'SendTyping');

  const $ = (id) => document.getElementById(id);
  const now = () => Date.now() + S.offset;

  /** Creates an element: h('button', {class: 'btn', onclick: f}, 'text', child…). */
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
      else if (k === 'class') el.className = v;
      else if (k === 'dataset') Object.assign(el.dataset, v);
      else if (v === true) el.setAttribute(k, '');
      else el.setAttribute(k, String(v));
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined || c === false) continue;
      el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return el;
  }

  function duration(ms) {
    const s = Math.max(0, Math.floor(ms / 1000));
    const hh = Math.floor(s / 3600);
    const mm = Math.floor((s % 3600) / 60);
    const ss = String(s % 60).padStart(2, '0');
    return hh > 0 ? `${hh}:${String(mm).padStart(2, '0')}:${ss}` : `${mm}:${ss}`;
  }

  function clock(ms) {
    const d = new Date(ms - S.offset);
    return d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false });
  }

  /** "NotReady(Lunch)" -> "Not ready: Lunch". */
  function agentLabel(state) {
    if (!state) return '—';
    const m = /^NotReady(?:\((.*)\))?$/.exec(state);
    if (m) return m[1] ? `Not ready: ${m[1]}` : 'Not ready';
    return { Ready: 'Ready', Busy: 'Busy', WorkingAfterCall: 'After-call work', LoggedOut: 'Logged out' }[state] || state;
  }

  const allows = (call, kind) => Array.isArray(call.allowed) && call.allowed.includes(kind);
  const isLive = (call) => !['Null', 'Failed'].includes(call.state);
  const far = (call) => (call.direction === 'outbound' ? call.dnis : call.ani) || 'unknown number';
  /** Chats and other text channels: a transcript and a reply box instead of a keypad. */
  const isText = (call) => call.channel === 'chat' || allows(call, 'SendMessage');
  const sessionOf = (callId) => Array.from(S.sessions.values()).find((x) => x.call_id === callId);

  // ------------------------------------------------------------------ connection

  let ws = null;
  let attempt = 0;
  let retryTimer = null;
  let lastMessage = 0;
  let nextRef = 1;
  const requests = new Map(); // ref -> {label}
  const myRequestIds = new Set();

  function connect() {
    clearTimeout(retryTimer);
    retryTimer = null;
    setConn('connecting', attempt === 0 ? 'Connecting…' : 'Reconnecting…');
    const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
    let sock;
    try {
      sock = new WebSocket(`${proto}//${location.host}/ws`);
    } catch (e) {
      scheduleReconnect('the browser refused to open the connection');
      return;
    }
    ws = sock;
    sock.onopen = () => {
      attempt = 0;
      lastMessage = Date.now();
    };
    sock.onmessage = (m) => {
      if (sock !== ws) return;
      lastMessage = Date.now();
      let msg;
      try {
        msg = JSON.parse(m.data);
      } catch (e) {
        return;
      }
      onMessage(msg);
    };
    sock.onclose = (ev) => {
      if (sock !== ws) return;
      ws = null;
      S.connected = false;
      const why = ev.code === 1001 ? 'The desktop stopped.' : ev.code === 1013 ? 'Too many tabs are open.' : 'Connection to the desktop lost.';
      scheduleReconnect(why);
    };
  }

  function scheduleReconnect(why) {
    attempt += 1;
    const base = [500, 1000, 2000, 4000, 8000, 15000][Math.min(attempt - 1, 5)];
    const delay = Math.round(base * (1 + Math.random() * 0.2));
    const at = Date.now() + delay;
    document.body.classList.add('offline');
    setConn('offline', 'Offline');
    render();
    const show = () => {
      const left = Math.max(0, Math.ceil((at - Date.now()) / 1000));
      showBanner(`${why} Reconnecting in ${left} s… Calls and state are kept by the desktop.`, 'reconnect');
    };
    show();
    clearInterval(scheduleReconnect.tick);
    scheduleReconnect.tick = setInterval(show, 1000);
    retryTimer = setTimeout(async () => {
      clearInterval(scheduleReconnect.tick);
      if (attempt >= 2 && !(await stillSignedIn())) {
        showBanner('You are signed out of the desktop (it restarted with a new token, or you signed out).', 'signin');
        setConn('offline', 'Signed out');
        return;
      }
      connect();
    }, delay);
  }

  async function stillSignedIn() {
    try {
      const r = await fetch('/session', { cache: 'no-store', credentials: 'same-origin' });
      return r.status !== 401;
    } catch (e) {
      return true; // unreachable: keep trying
    }
  }

  // A connection that went silent (no tick for 25 s) is dead: reconnect.
  setInterval(() => {
    if (ws && ws.readyState === WebSocket.OPEN && Date.now() - lastMessage > 25000) ws.close();
  }, 5000);

  /**
   * Sends a command. `opts.done(ok)` runs when its outcome arrives;
   * `opts.quiet` keeps a failure out of the notices (typing notifications).
   */
  function send(command, label, opts) {
    const o = opts || {};
    if (!ws || ws.readyState !== WebSocket.OPEN) {
      if (!o.quiet) notice(`${label}: not connected to the desktop; try again when the connection is back.`, 'error');
      if (o.done) o.done(false);
      return;
    }
    const ref = nextRef++;
    requests.set(ref, { label, done: o.done, quiet: o.quiet });
    ws.send(JSON.stringify({ op: 'command', ref, command }));
  }

  function onMessage(msg) {
    switch (msg.type) {
      case 'snapshot':
        applySnapshot(msg);
        break;
      case 'event':
        applyEvent(msg.event);
        break;
      case 'result':
        onResult(msg);
        break;
      case 'tick':
        S.offset = msg.now_ms - Date.now();
        break;
      default:
        break;
    }
  }

  function onResult(r) {
    const req = requests.get(r.ref);
    requests.delete(r.ref);
    if (r.request_id) myRequestIds.add(r.request_id);
    if (req && req.done) req.done(!!r.ok);
    if (r.ok || (req && req.quiet)) return;
    const what = (req && req.label) || r.command || 'Request';
    notice(`${what} failed: ${r.text || r.cause}${r.cause ? ` (${r.cause})` : ''}`, 'error');
  }

  function setConn(state, text) {
    const el = $('conn-state');
    el.dataset.state = state;
    el.textContent = text;
  }

  function showBanner(text, mode) {
    const b = $('banner');
    $('banner-text').textContent = text;
    $('reconnect-now').hidden = mode !== 'reconnect';
    $('sign-in-again').hidden = mode !== 'signin';
    b.dataset.mode = mode;
    b.hidden = false;
  }

  function hideBanner() {
    clearInterval(scheduleReconnect.tick);
    $('banner').hidden = true;
  }

  // ------------------------------------------------------------------ applying snapshots and events

  function applySnapshot(msg) {
    const snap = msg.snapshot;
    S.offset = msg.now_ms - Date.now();
    S.instance = msg.instance || '';
    S.seq = snap.seq;
    S.agent = snap.agent;
    S.calls = new Map();
    for (const c of snap.calls) S.calls.set(c.call_id, stamp(c));
    S.sessions = new Map();
    for (const s of snap.sessions || []) S.sessions.set(s.session_id, s);
    S.plugins = snap.plugins || [];
    S.reasons = snap.reason_codes || [];
    S.dispositions = snap.dispositions || [];
    // The events the host kept, for the log: what happened before this page
    // loaded, or while it was disconnected.
    for (const m of msg.recent || []) {
      if (m.event) logEvent(m.event);
    }
    const wasOffline = document.body.classList.contains('offline');
    S.connected = true;
    document.body.classList.remove('offline', 'connecting');
    setConn('live', 'Live');
    hideBanner();
    log(now(), 'Synchronised', `${snap.calls.length} call${snap.calls.length === 1 ? '' : 's'} · ${agentLabel(snap.agent.state)}`, 'sync');
    if (wasOffline) notice('Connection restored; the desktop is up to date.', 'ok');
    render();
  }

  /** Remembers when a call's wrap-up ends, in browser time. */
  function stamp(call) {
    const w = call.work || {};
    if (w.state === 'Wrapping' && !w.wrap_up_unlimited && w.wrap_up_remaining_ms > 0) {
      call._wrapEnds = Date.now() + w.wrap_up_remaining_ms;
    }
    return call;
  }

  function applyEvent(ev) {
    if (ev.seq <= S.seq) return; // already in the snapshot
    S.seq = ev.seq;
    if ('agent_state' in ev) {
      S.agent = { agent_id: ev.agent_id, state: ev.agent_state, pending: ev.pending_state };
    }
    if (ev.call) {
      if (ev.event === 'CallRemoved') S.calls.delete(ev.call_id);
      else S.calls.set(ev.call_id, stamp(ev.call));
    }
    if (ev.session) {
      const s = ev.session;
      if (ev.event === 'SessionClosed') S.sessions.delete(s.session_id);
      else {
        if (s.focused) for (const o of S.sessions.values()) o.focused = false;
        S.sessions.set(s.session_id, s);
      }
    }
    if (ev.event === 'MessageReceived' || ev.event === 'MessageSent') {
      // The desktop adds the line to the session without resending it
      // (the same rule as sdk::chat::transcript_line).
      const s = sessionOf(ev.call_id);
      if (s) {
        const who = ev.event === 'MessageSent' ? 'agent' : ev.party || 'customer';
        s.transcript = (s.transcript || []).concat(`${who}: ${ev.text || ''}`).slice(-TRANSCRIPT_LINES);
      }
      if (ev.event === 'MessageReceived') S.typing.delete(ev.call_id);
    }
    if (ev.event === 'Typing' && ev.call_id) {
      S.typing.set(ev.call_id, { state: ev.text || 'composing', who: ev.party, at: Date.now() });
    }
    if (ev.event === 'CallRemoved' || ev.event === 'ConnectionCleared') S.typing.delete(ev.call_id);
    const p = S.plugins.find((x) => x.name === ev.source);
    if (p && ev.event === 'PluginStatus') p.status = ev.text;
    if (p && ev.event === 'ConnectorStatus') p.link = ev.text;
    if (p && ev.event === 'PluginReloaded') p.version = ev.text;

    if (ev.event === 'AgentStateRejected') {
      // Our own requests are reported by their result; others (a pending
      // state refused when applied) are shown here.
      const id = ev.request_id;
      setTimeout(() => {
        if (!myRequestIds.has(id)) notice(`Agent state refused: ${ev.text || ev.cause}`, 'error');
      }, 400);
    }
    if (ev.event === 'PluginStatus' && ev.text === 'Faulted') {
      notice(`${ev.source} failed: ${ev.cause || 'see the host log'}. An administrator can start it again with: cti-host ctl restart ${ev.source}`, 'error');
    }
    logEvent(ev);
    scheduleRender();
  }

  function logClass(ev) {
    if (ev.event === 'CommandFailed' || ev.event === 'AgentStateRejected' || ev.event === 'Failed') return 'bad';
    if (ev.event === 'CommandCompleted' || ev.event === 'CallUpdated') return 'quiet';
    return '';
  }

  function describe(ev) {
    const parts = [];
    const outcome = ['CommandCompleted', 'CommandFailed', 'CommandRequested'].includes(ev.event);
    if (outcome) {
      if (ev.attrs && ev.attrs.command) parts.push(ev.attrs.command);
      if (ev.attrs && ev.attrs.requester) parts.push(`by ${ev.attrs.requester}`);
    } else if (ev.call) {
      const c = ev.call;
      if (ev.event === 'Delivered' || ev.event === 'Originated') parts.push(`${c.ani || '?'} → ${c.dnis || '?'}`);
      else parts.push(far(c));
      parts.push(STATE_LABEL[c.state] || c.state);
    }
    if ('agent_state' in ev) {
      parts.push(agentLabel(ev.agent_state));
      if (ev.pending_state) parts.push(`then ${agentLabel(ev.pending_state)}`);
    }
    if (ev.party && !outcome) parts.push(`party ${ev.party}`);
    if (ev.cause) parts.push(`(${ev.cause})`);
    if (ev.text) parts.push(ev.text);
    if (ev.session && ev.session.contact) parts.push(ev.session.contact.name);
    return parts.join(' · ');
  }

  // ------------------------------------------------------------------ notices and log

  function notice(text, kind) {
    const box = $('notices');
    const n = h(
      'div',
      { class: `notice ${kind}`, role: kind === 'error' ? 'alert' : 'status' },
      h('span', {}, text),
      h('button', { type: 'button', class: 'link', 'aria-label': 'Dismiss', onclick: () => n.remove() }, '×'),
    );
    box.prepend(n);
    while (box.children.length > 4) box.lastElementChild.remove();
    setTimeout(() => n.remove(), kind === 'error' ? 12000 : 5000);
  }

  function log(timeMs, name, detail, kind) {
    const ol = $('log');
    ol.prepend(
      h(
        'li',
        { class: kind || '' },
        h('time', {}, clock(timeMs || now())),
        ' ',
        h('span', { class: 'ev' }, name),
        detail ? h('span', { class: 'detail' }, ' ', detail) : null,
      ),
    );
    while (ol.children.length > LOG_MAX) ol.lastElementChild.remove();
  }

  // ------------------------------------------------------------------ rendering

  let renderQueued = false;
  function scheduleRender() {
    if (renderQueued) return;
    renderQueued = true;
    setTimeout(() => {
      renderQueued = false;
      render();
    }, 0);
  }

  function render() {
    renderAgent();
    renderLinks();
    renderCalls();
    renderSessions();
    tick();
  }

  function renderAgent() {
    const a = S.agent;
    const offline = !S.connected;
    $('agent-id').textContent = a ? a.agent_id : '—';
    const st = $('agent-state');
    const name = a ? agentLabel(a.state) : '—';
    if (st.textContent !== name) st.textContent = name;
    st.dataset.value = a ? a.state : '';
    st.dataset.state = a ? a.state.replace(/\(.*$/, '') : '';
    const pend = a && a.pending;
    $('agent-pending').hidden = !pend;
    $('agent-pending-state').textContent = pend ? agentLabel(pend) : '';
    $('agent-pending-state').dataset.value = pend || '';
    const sel = $('reason');
    const want = S.reasons.length ? S.reasons : [''];
    const have = Array.from(sel.options).map((o) => o.value);
    if (have.join('\u0000') !== want.join('\u0000')) {
      const keep = sel.value;
      sel.replaceChildren(...want.map((r) => h('option', { value: r }, r || '(no reason)')));
      if (want.includes(keep)) sel.value = keep;
    }
    for (const id of ['ready', 'not-ready', 'logout-agent', 'clear-pending', 'dial-button']) $(id).disabled = offline;
    sel.disabled = offline;
    $('ready').setAttribute('aria-pressed', String(!!a && a.state === 'Ready'));
    const ringing = Array.from(S.calls.values()).filter((c) => c.state === 'Alerting' && allows(c, 'Answer')).length;
    document.title = ringing ? `(${ringing}) Ringing · Agent desktop` : 'Agent desktop';
  }

  function renderLinks() {
    const links = $('links');
    const connectors = S.plugins.filter((p) => p.kind === 'connector');
    const sig = JSON.stringify(connectors.map((p) => [p.name, p.status, p.link]));
    if (links.dataset.sig === sig) return;
    links.dataset.sig = sig;
    links.replaceChildren(
      ...connectors.map((p) => {
        const ok = p.status === 'Running' && (p.link === 'Connected' || p.link === 'Unknown' || !p.link);
        const state = p.status !== 'Running' ? p.status : p.link || 'Unknown';
        return h('span', { class: `link-state ${ok ? 'ok' : 'bad'}`, title: `${p.name} (${p.channel || 'connector'}): ${state}` }, `${p.name}: ${state}`);
      }),
    );
  }

  function renderCalls() {
    const box = $('calls');
    const seen = new Set();
    let prev = null;
    for (const call of S.calls.values()) {
      seen.add(call.call_id);
      let card = box.querySelector(`article.call[data-call-id="${CSS.escape(call.call_id)}"]`);
      if (!card) card = newCard(call);
      updateCard(card, call);
      const want = prev ? prev.nextElementSibling : box.firstElementChild;
      if (want !== card) box.insertBefore(card, want);
      prev = card;
    }
    for (const card of Array.from(box.querySelectorAll('article.call'))) {
      if (!seen.has(card.dataset.callId)) card.remove();
    }
    $('no-calls').hidden = S.calls.size > 0;
  }

  let cardSeq = 0;
  function newCard(call) {
    const n = ++cardSeq;
    const titleId = `call-${n}-title`;
    const targetId = `call-${n}-target`;
    const replyId = `call-${n}-reply`;
    const card = h(
      'article',
      { class: 'call', 'aria-labelledby': titleId, dataset: { callId: call.call_id } },
      h(
        'header',
        { class: 'call-head' },
        h('span', { class: 'dir' }),
        h('h3', { id: titleId, class: 'call-title' }),
        h('span', { class: 'call-name' }),
        h('span', { class: 'badge call-state' }),
        h('span', { class: 'timer', role: 'timer', 'aria-label': 'Call time' }),
      ),
      h('dl', { class: 'call-meta' }),
      h('div', { class: 'parties' }),
      h('div', { class: 'actions', role: 'group', 'aria-label': 'Call actions' }),
      h(
        'form',
        { class: 'transfer', autocomplete: 'off', onsubmit: (e) => e.preventDefault() },
        h('label', { for: targetId }, 'Transfer or consult to'),
        h('input', { id: targetId, class: 'target', type: 'tel', inputmode: 'tel', placeholder: 'Number or extension' }),
        h('button', { type: 'button', class: 'btn', dataset: { action: 'BlindTransfer' } }, 'Transfer'),
        h('button', { type: 'button', class: 'btn', dataset: { action: 'Consult' } }, 'Consult'),
      ),
      h(
        'details',
        { class: 'dtmf' },
        h('summary', {}, 'Keypad (DTMF)'),
        h(
          'div',
          { class: 'pad', role: 'group', 'aria-label': 'Send a DTMF digit' },
          ...'123456789*0#'.split('').map((d) => h('button', { type: 'button', class: 'key', dataset: { digit: d } }, d)),
        ),
      ),
      h(
        'section',
        { class: 'chat', 'aria-label': 'Conversation', hidden: true },
        h('ol', { class: 'chat-log', role: 'log', 'aria-live': 'polite', 'aria-label': 'Conversation' }),
        h('p', { class: 'typing', 'aria-live': 'polite' }),
        h(
          'form',
          { class: 'reply', autocomplete: 'off' },
          h('label', { for: replyId }, 'Reply'),
          h('textarea', { id: replyId, class: 'reply-text', rows: 2, placeholder: 'Type a reply. Enter sends, Shift+Enter starts a new line.' }),
          h('button', { type: 'submit', class: 'btn go', dataset: { action: 'SendMessage' } }, 'Send'),
        ),
      ),
      h('div', { class: 'wrapup' }),
    );
    wireReply(card);
    const transfer = card.querySelector('form.transfer');
    transfer.addEventListener('click', (e) => {
      const b = e.target.closest('button[data-action]');
      if (!b) return;
      const call = S.calls.get(card.dataset.callId);
      const input = transfer.querySelector('input');
      const target = input.value.trim();
      if (!call) return;
      if (!target) {
        notice(isText(call) ? 'Enter the address to transfer the chat to.' : 'Enter a number to transfer or consult to.', 'error');
        input.focus();
        return;
      }
      const kind = b.dataset.action;
      send({ kind, call_id: call.call_id, target }, `${kind === 'Consult' ? 'Consult' : 'Transfer'} to ${target}`);
      input.value = '';
    });
    card.querySelector('.pad').addEventListener('click', (e) => {
      const b = e.target.closest('button[data-digit]');
      const call = S.calls.get(card.dataset.callId);
      if (b && call) send({ kind: 'SendDtmf', call_id: call.call_id, target: b.dataset.digit }, `Digit ${b.dataset.digit}`);
    });
    return card;
  }

  /** The reply box: Enter sends; the text stays until the desktop confirms it. */
  function wireReply(card) {
    const form = card.querySelector('form.reply');
    const box = form.querySelector('textarea');
    const typing = { sentAt: 0, pause: null };
    const typingState = (state) => {
      const call = S.calls.get(card.dataset.callId);
      if (!call || !allows(call, 'SendTyping')) return;
      send({ kind: 'SendTyping', call_id: call.call_id, text: state }, 'Typing', { quiet: true });
    };
    box.addEventListener('keydown', (e) => {
      if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
        e.preventDefault();
        form.requestSubmit();
      }
    });
    box.addEventListener('input', () => {
      clearTimeout(typing.pause);
      if (!box.value) return;
      if (Date.now() - typing.sentAt > TYPING_EVERY_MS) {
        typing.sentAt = Date.now();
        typingState('composing');
      }
      typing.pause = setTimeout(() => {
        typing.sentAt = 0;
        typingState('paused');
      }, TYPING_PAUSE_MS);
    });
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      const call = S.calls.get(card.dataset.callId);
      const text = box.value;
      if (!call || form.dataset.busy) return;
      if (!text.trim()) {
        notice('Type a message first.', 'error');
        box.focus();
        return;
      }
      clearTimeout(typing.pause);
      typing.sentAt = 0;
      form.dataset.busy = '1';
      form.setAttribute('aria-busy', 'true');
      send({ kind: 'SendMessage', call_id: call.call_id, text }, `Message to ${far(call)}`, {
        done: (ok) => {
          delete form.dataset.busy;
          form.removeAttribute('aria-busy');
          // Cleared only once the desktop took it: a refused message (too
          // long, chat ended) stays in the box.
          if (ok && box.value === text) box.value = '';
        },
      });
    });
  }

  /** The conversation of a text interaction: transcript, typing notice, reply box. */
  function renderChat(card, call) {
    const section = card.querySelector('section.chat');
    const session = sessionOf(call.call_id);
    const lines = (session && session.transcript) || [];
    const text = isText(call);
    section.hidden = !text && lines.length === 0;
    if (section.hidden) return;
    const ol = section.querySelector('.chat-log');
    const sig = `${lines.length}|${lines[0] || ''}|${lines[lines.length - 1] || ''}`;
    if (ol.dataset.sig !== sig) {
      const atEnd = ol.scrollHeight - ol.scrollTop - ol.clientHeight < 40;
      const item = (line) => {
        const i = line.indexOf(': ');
        const who = i < 0 ? '' : line.slice(0, i);
        const said = i < 0 ? line : line.slice(i + 2);
        const mine = who === 'agent';
        return h('li', { class: mine ? 'me' : 'them' }, h('span', { class: 'who' }, mine ? 'You' : who), h('span', { class: 'said' }, said));
      };
      // New lines are appended (the log region announces only them); a
      // transcript that changed otherwise (a snapshot, the oldest line
      // dropped) is drawn again.
      const shown = Number(ol.dataset.count || 0);
      if (shown > 0 && lines.length > shown && ol.dataset.first === lines[0]) {
        ol.append(...lines.slice(shown).map(item));
      } else {
        ol.replaceChildren(...lines.map(item));
      }
      ol.dataset.sig = sig;
      ol.dataset.count = String(lines.length);
      ol.dataset.first = lines[0] || '';
      if (atEnd) ol.scrollTop = ol.scrollHeight;
    }
    const t = S.typing.get(call.call_id);
    const typingText = t && t.state === 'composing' && Date.now() - t.at < TYPING_STALE_MS && isLive(call) ? `${t.who || far(call)} is typing…` : '';
    const typingEl = section.querySelector('.typing');
    if (typingEl.textContent !== typingText) typingEl.textContent = typingText;
    typingEl.hidden = !typingText;
    const form = section.querySelector('form.reply');
    const wasHidden = form.hidden;
    form.hidden = !allows(call, 'SendMessage');
    for (const el of form.querySelectorAll('button, textarea')) el.disabled = !S.connected;
    // A chat just accepted: the reply box takes the focus, unless the agent
    // is busy elsewhere (typing in another box, say).
    const here = document.activeElement;
    if (wasHidden && !form.hidden && (here === document.body || card.contains(here))) {
      form.querySelector('textarea').focus();
    }
  }

  /** The command buttons a call allows now. */
  function callButtons(call) {
    const others = Array.from(S.calls.values()).filter((c) => c.call_id !== call.call_id && c.connector === call.connector && isLive(c));
    // Two-call commands name the held call as call_id and the active one as
    // other_call_id. They are offered on the active call's card (the one
    // the agent is talking to): "Cancel consult" ends that call and takes
    // the held one back.
    const held = call.state === 'Connected' ? others.find((c) => c.state === 'Held') : null;
    const b = [];
    const add = (kind, label, cls, extra, keys) => {
      if (!allows(call, kind)) return;
      b.push({ kind, label, cls, command: Object.assign({ kind, call_id: call.call_id }, extra || {}), keys });
    };
    const text = isText(call);
    add('Answer', text ? 'Accept' : 'Answer', 'go', null, 'F2 Alt+A');
    add('Reject', text ? 'Decline' : 'Reject', 'stop');
    add('Hold', 'Hold', '', null, 'F8 Alt+O');
    add('Retrieve', 'Retrieve', '', null, 'F8 Alt+O');
    add('Mute', 'Mute', '', null, 'F9 Alt+M');
    add('Unmute', 'Unmute', 'on', null, 'F9 Alt+M');
    if (held) {
      const extra = { call_id: held.call_id, other_call_id: call.call_id };
      add('Alternate', 'Swap calls', '', extra);
      add('Conference', 'Conference', '', extra);
      add('CompleteTransfer', 'Complete transfer', '', extra);
      add('CancelConsult', 'Cancel consult', '', extra);
    }
    add('Hangup', text ? 'End chat' : 'Hang up', 'stop', null, 'F4 Alt+H');
    return b;
  }

  function updateCard(card, call) {
    card.dataset.state = call.state;
    card.dataset.work = (call.work && call.work.state) || '';
    card.classList.toggle('muted-call', !!call.muted);
    const head = card.querySelector('.call-head');
    const consultOf = call.attrs && call.attrs.consult_of;
    const dir = call.direction === 'outbound' ? 'Outbound' : 'Inbound';
    head.querySelector('.dir').textContent = consultOf ? 'Consultation' : isText(call) ? `${dir} ${call.channel || 'chat'}` : dir;
    const title = head.querySelector('.call-title');
    const t = far(call);
    if (title.textContent !== t) title.textContent = t;
    // The screen-popped contact's name, from the call's session.
    const session = sessionOf(call.call_id);
    const who = session && session.contact ? session.contact.name || '' : '';
    const nameEl = head.querySelector('.call-name');
    if (nameEl.textContent !== who) nameEl.textContent = who;
    const badge = head.querySelector('.call-state');
    const wrapping = call.work && call.work.state === 'Wrapping';
    const label = wrapping ? 'Wrap-up' : (STATE_LABEL[call.state] || call.state) + (call.muted ? ' · muted' : '');
    if (badge.textContent !== label) badge.textContent = label;
    badge.dataset.state = wrapping ? 'Wrapping' : call.state;
    // Call time counts from the answer (or the first ring); in wrap-up the
    // countdown is shown in the wrap-up section instead.
    const timer = head.querySelector('.timer');
    timer.hidden = wrapping || !isLive(call);
    timer.dataset.mode = 'up';
    timer.dataset.at = call.answered_ms || call.started_ms || '';

    // Details: the other end, the called number, call data, the work item.
    const meta = [];
    meta.push(['From', call.ani || '—'], ['To', call.dnis || '—']);
    for (const [k, v] of Object.entries(call.data || {})) meta.push([k, v]);
    if (call.work) meta.push(['Work', WORK_LABEL[call.work.state] || call.work.state]);
    if (call.work && call.work.disposition) meta.push(['Disposition', call.work.disposition]);
    setList(card.querySelector('.call-meta'), meta);

    const parties = (call.parties || []).filter((p) => p.state !== 'Null');
    const pbox = card.querySelector('.parties');
    const psig = JSON.stringify(parties);
    if (pbox.dataset.sig !== psig) {
      pbox.dataset.sig = psig;
      pbox.replaceChildren(
        ...(parties.length > 1
          ? [h('span', { class: 'label' }, 'Parties: '), ...parties.map((p) => h('span', { class: 'party', dataset: { state: p.state } }, `${p.id} (${STATE_LABEL[p.state] || p.state})`))]
          : []),
      );
    }

    const buttons = callButtons(call);
    const actions = card.querySelector('.actions');
    const sig = JSON.stringify([buttons.map((b) => [b.kind, b.command.call_id, b.command.other_call_id]), S.connected]);
    if (actions.dataset.sig !== sig) {
      const focused = actions.contains(document.activeElement) ? document.activeElement.dataset.action : null;
      actions.dataset.sig = sig;
      actions.replaceChildren(
        ...buttons.map((b) =>
          h(
            'button',
            {
              type: 'button',
              class: `btn ${b.cls || ''}`,
              dataset: { action: b.kind },
              disabled: !S.connected,
              'aria-keyshortcuts': b.keys,
              title: b.keys ? `${b.label} (${b.keys.replace(' ', ' or ')})` : null,
              onclick: () => send(b.command, `${b.label} (${far(call)})`),
            },
            b.label,
          ),
        ),
      );
      if (focused) {
        const again = actions.querySelector(`button[data-action="${focused}"]`);
        (again || card.querySelector('.actions button') || $('calls-heading')).focus();
      }
    }

    const transfer = card.querySelector('form.transfer');
    const text = isText(call);
    const tInput = transfer.querySelector('input');
    const tLabel = text ? 'Transfer to' : 'Transfer or consult to';
    if (transfer.querySelector('label').textContent !== tLabel) {
      transfer.querySelector('label').textContent = tLabel;
      tInput.type = text ? 'text' : 'tel';
      tInput.inputMode = text ? 'email' : 'tel';
      tInput.placeholder = text ? "Another agent's address" : 'Number or extension';
    }
    const canTransfer = allows(call, 'BlindTransfer');
    const canConsult = allows(call, 'Consult');
    transfer.hidden = !(canTransfer || canConsult);
    transfer.querySelector('[data-action="BlindTransfer"]').hidden = !canTransfer;
    transfer.querySelector('[data-action="Consult"]').hidden = !canConsult;
    for (const el of transfer.querySelectorAll('button, input')) el.disabled = !S.connected;

    const dtmf = card.querySelector('details.dtmf');
    dtmf.hidden = !allows(call, 'SendDtmf');
    for (const el of dtmf.querySelectorAll('button')) el.disabled = !S.connected;

    renderChat(card, call);
    renderWrapUp(card, call, wrapping);
  }

  function setList(dl, pairs) {
    const sig = JSON.stringify(pairs);
    if (dl.dataset.sig === sig) return;
    dl.dataset.sig = sig;
    dl.replaceChildren(...pairs.flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));
  }

  function renderWrapUp(card, call, wrapping) {
    const box = card.querySelector('.wrapup');
    const sig = JSON.stringify([wrapping, call.work && call.work.disposition, S.dispositions, S.connected]);
    if (box.dataset.sig === sig) return;
    box.dataset.sig = sig;
    if (!wrapping) {
      box.replaceChildren();
      box.hidden = true;
      return;
    }
    box.hidden = false;
    const selId = `${card.getAttribute('aria-labelledby')}-disposition`;
    const current = call.work.disposition || '';
    const select = h(
      'select',
      { id: selId, disabled: !S.connected },
      h('option', { value: '' }, 'Choose…'),
      ...S.dispositions.map((d) => h('option', { value: d, selected: d === current }, d)),
    );
    const id = call.call_id;
    box.replaceChildren(
      h('h4', {}, 'Wrap-up'),
      h('p', { class: 'wrap-left' }, call.work.wrap_up_unlimited ? 'No time limit' : h('span', {}, h('span', { class: 'timer', role: 'timer', dataset: { mode: 'down', at: call._wrapEnds || '' } }), ' left')),
      h(
        'div',
        { class: 'wrap-row' },
        h('label', { for: selId }, 'Disposition'),
        select,
        h(
          'button',
          {
            type: 'button',
            class: 'btn',
            dataset: { action: 'SetDisposition' },
            disabled: !S.connected,
            onclick: () => {
              if (!select.value) {
                notice('Choose a disposition first.', 'error');
                select.focus();
                return;
              }
              send({ kind: 'SetDisposition', call_id: id, text: select.value }, `Disposition ${select.value}`);
            },
          },
          'Save',
        ),
      ),
      h(
        'div',
        { class: 'wrap-row' },
        h('button', { type: 'button', class: 'btn', dataset: { action: 'ExtendWrapUp' }, disabled: !S.connected, onclick: () => send({ kind: 'ExtendWrapUp', call_id: id, target: '30' }, 'Extend wrap-up') }, '+30 s'),
        h('button', { type: 'button', class: 'btn go', dataset: { action: 'EndWrapUp' }, disabled: !S.connected, onclick: () => send({ kind: 'EndWrapUp', call_id: id }, 'Finish wrap-up') }, 'Finish wrap-up'),
      ),
    );
  }

  function renderSessions() {
    const box = $('sessions');
    const list = Array.from(S.sessions.values()).sort((a, b) => Number(b.focused) - Number(a.focused));
    const sig = JSON.stringify([list, S.connected]);
    if (box.dataset.sig === sig) return;
    box.dataset.sig = sig;
    box.replaceChildren(...list.map(sessionCard));
    $('no-sessions').hidden = list.length > 0;
  }

  function sessionCard(s) {
    const call = S.calls.get(s.call_id);
    const c = s.contact;
    const title = c ? c.name || c.phone || c.id : s.outcome === 'pick-list' ? 'Several matching contacts' : 'New contact';
    const body = [];
    if (c) {
      const pairs = [];
      if (c.phone) pairs.push(['Phone', c.phone]);
      if (c.id) pairs.push(['Record', c.id]);
      for (const [k, v] of Object.entries(c.fields || {})) pairs.push([k, v]);
      const dl = h('dl', { class: 'contact' });
      setList(dl, pairs);
      body.push(dl);
    } else if (s.outcome !== 'pick-list') {
      body.push(h('p', { class: 'muted' }, `No record matches this ${call && isText(call) ? 'customer' : 'caller'}.`));
    }
    if (s.candidates && s.candidates.length) {
      body.push(
        h(
          'ul',
          { class: 'candidates', 'aria-label': 'Matching contacts' },
          ...s.candidates.map((cand) =>
            h(
              'li',
              {},
              h('span', {}, `${cand.name || cand.id}${cand.phone ? ` · ${cand.phone}` : ''}`),
              h('button', { type: 'button', class: 'btn small', disabled: !S.connected, onclick: () => send({ kind: 'PickContact', call_id: s.call_id, target: cand.id }, `Select ${cand.name || cand.id}`) }, 'Select'),
            ),
          ),
        ),
      );
    }
    return h(
      'article',
      { class: `session${s.focused ? ' focused' : ''}`, dataset: { sessionId: s.session_id, callId: s.call_id }, 'aria-current': s.focused ? 'true' : null },
      h('h3', {}, title),
      h('p', { class: 'muted' }, call ? `${isText(call) ? 'Chat with' : call.direction === 'outbound' ? 'Call to' : 'Call from'} ${far(call)}` : 'Interaction ended'),
      ...body,
      s.focused ? null : h('button', { type: 'button', class: 'btn small', disabled: !S.connected, onclick: () => send({ kind: 'FocusSession', call_id: s.call_id }, 'Focus') }, 'Show'),
    );
  }

  // Timers: call time counts up from the answer (or the first ring); wrap-up counts down.
  function tick() {
    for (const [id, t] of S.typing) {
      if (Date.now() - t.at >= TYPING_STALE_MS) {
        S.typing.delete(id);
        scheduleRender();
      }
    }
    for (const el of document.querySelectorAll('.timer[data-at]')) {
      const at = Number(el.dataset.at);
      let text = '';
      if (at) {
        text = el.dataset.mode === 'down' ? duration(at - Date.now() + 999) : duration(now() - at);
      }
      if (el.textContent !== text) el.textContent = text;
    }
  }
  setInterval(tick, 1000);

  // ------------------------------------------------------------------ agent controls, dial, shortcuts

  function agentState(state, label) {
    send({ kind: 'SetAgentState', agent_state: state }, label);
  }

  function wire() {
    $('ready').addEventListener('click', () => agentState('Ready', 'Ready'));
    $('not-ready').addEventListener('click', () => {
      const r = $('reason').value;
      agentState(r ? `NotReady(${r})` : 'NotReady', r ? `Not ready (${r})` : 'Not ready');
    });
    $('logout-agent').addEventListener('click', () => agentState('LoggedOut', 'Log out'));
    $('clear-pending').addEventListener('click', () => send({ kind: 'ClearPendingState' }, 'Cancel the pending state'));
    $('reconnect-now').addEventListener('click', () => {
      attempt = 0;
      connect();
    });
    $('dial').addEventListener('submit', (e) => {
      e.preventDefault();
      const input = $('dial-number');
      const number = input.value.trim();
      if (!number) return;
      send({ kind: 'MakeCall', target: number }, `Call ${number}`);
      input.value = '';
    });
    document.addEventListener('keydown', onKey);
  }

  function mostRecent(pred) {
    const list = Array.from(S.calls.values()).filter(pred);
    return list.length ? list[list.length - 1] : null;
  }

  /** The call the agent is on: the most recent connected one, else held, else dialing. */
  function current() {
    return (
      mostRecent((c) => c.state === 'Connected') ||
      mostRecent((c) => c.state === 'Held') ||
      mostRecent((c) => isLive(c) && c.state !== 'Alerting')
    );
  }

  function onKey(e) {
    const k = e.key;
    const alt = (code) => e.altKey && !e.ctrlKey && !e.metaKey && e.code === code;
    let done = true;
    if (k === 'F2' || alt('KeyA')) {
      const c = mostRecent((x) => allows(x, 'Answer'));
      if (c) send({ kind: 'Answer', call_id: c.call_id }, `Answer (${far(c)})`);
    } else if (k === 'F4' || alt('KeyH')) {
      const c = current();
      if (c && allows(c, 'Hangup')) send({ kind: 'Hangup', call_id: c.call_id }, `Hang up (${far(c)})`);
      else {
        const r = mostRecent((x) => allows(x, 'Reject'));
        if (r) send({ kind: 'Reject', call_id: r.call_id }, `Reject (${far(r)})`);
      }
    } else if (k === 'F8' || alt('KeyO')) {
      const c = current();
      if (c && allows(c, 'Hold')) send({ kind: 'Hold', call_id: c.call_id }, `Hold (${far(c)})`);
      else if (c && allows(c, 'Retrieve')) send({ kind: 'Retrieve', call_id: c.call_id }, `Retrieve (${far(c)})`);
    } else if (k === 'F9' || alt('KeyM')) {
      const c = current();
      if (c && allows(c, 'Mute')) send({ kind: 'Mute', call_id: c.call_id }, 'Mute');
      else if (c && allows(c, 'Unmute')) send({ kind: 'Unmute', call_id: c.call_id }, 'Unmute');
    } else {
      done = false;
    }
    if (done) e.preventDefault();
  }

  function start() {
    wire();
    render();
    connect();
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();
