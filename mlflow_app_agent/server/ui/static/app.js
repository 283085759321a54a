/* The chat page of mlflow-app-agent: streams answers from POST responses (the same route
 * and contract as API clients), renders them as sanitized markdown, and sends thumbs
 * up/down + comments to POST feedback. The conversation lives in memory only. */
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const log = $("log");
  const prompt = $("prompt");
  const form = $("composer");
  const sendBtn = $("send");
  const stopBtn = $("stop");
  const TRACE_HEADER = "x-mlflow-trace-id";

  const state = { history: [], controller: null, busy: false, info: null };
  // for tests and benchmarks: what was sent, when the first token was painted
  window.__chat = { requests: [], marks: [] };

  // --- markdown, sanitized ---------------------------------------------------------------
  marked.setOptions({ gfm: true, breaks: true });
  DOMPurify.addHook("afterSanitizeAttributes", (node) => {
    if (node.tagName === "A" && node.hasAttribute("href")) {
      node.setAttribute("target", "_blank");
      node.setAttribute("rel", "noopener noreferrer nofollow");
    }
  });
  const PURIFY = { FORBID_TAGS: ["style", "form", "input", "button", "textarea", "select"],
                   FORBID_ATTR: ["style"] };

  function renderMarkdown(el, text) {
    el.innerHTML = DOMPurify.sanitize(marked.parse(text), PURIFY);
    for (const pre of el.querySelectorAll("pre")) addCopyButton(pre);
  }

  function addCopyButton(pre) {
    const wrap = document.createElement("div");
    wrap.className = "code";
    pre.replaceWith(wrap);
    const bar = document.createElement("div");
    bar.className = "code-bar";
    const code = pre.querySelector("code");
    const lang = code && /language-([\w+#-]+)/.exec(code.className || "");
    bar.append(textEl("span", lang ? lang[1] : "code", "lang"));
    const btn = button("Copy", "btn tiny", "Copy code to clipboard");
    btn.addEventListener("click", async () => {
      const text = (code || pre).textContent;
      try {
        await navigator.clipboard.writeText(text);
        flash(btn, "Copied");
      } catch (_) {
        const range = document.createRange();
        range.selectNodeContents(code || pre);
        const sel = window.getSelection();
        sel.removeAllRanges();
        sel.addRange(range);
        flash(btn, "Selected: press Ctrl+C");
      }
    });
    bar.append(btn);
    wrap.append(bar, pre);
  }

  function flash(btn, text) {
    const old = btn.textContent;
    btn.textContent = text;
    setTimeout(() => { btn.textContent = old; }, 1500);
  }

  // --- small DOM helpers -----------------------------------------------------------------
  function textEl(tag, text, cls) {
    const el = document.createElement(tag);
    if (cls) el.className = cls;
    el.textContent = text;
    return el;
  }
  function button(label, cls, aria) {
    const b = document.createElement("button");
    b.type = "button";
    b.className = cls;
    b.textContent = label;
    if (aria) b.setAttribute("aria-label", aria);
    return b;
  }
  function scrollDown() {
    const nearBottom = window.innerHeight + window.scrollY >= document.body.scrollHeight - 160;
    if (nearBottom) window.scrollTo(0, document.body.scrollHeight);
  }
  function newId() {
    return (crypto.randomUUID ? crypto.randomUUID() : String(Date.now()) + Math.random())
      .replace(/[^A-Za-z0-9-]/g, "");
  }
  function setBusy(busy) {
    state.busy = busy;
    sendBtn.hidden = busy;
    stopBtn.hidden = !busy;
    if (busy) stopBtn.focus({ preventScroll: true });
    else if (document.activeElement === stopBtn || document.activeElement === document.body) {
      prompt.focus({ preventScroll: true });
    }
  }

  // --- header: agent name, version, commit, user -------------------------------------------
  function showUser() {
    const user = document.querySelector('meta[name="agent-user"]').content;
    const el = $("user");
    if (user) {
      el.append(textEl("span", user.slice(0, 1).toUpperCase(), "avatar"),
        textEl("span", user, "user-name"));
      el.title = "Signed in as " + user;
    } else {
      el.hidden = true;
    }
  }

  async function loadInfo(attempt) {
    const status = $("status");
    try {
      const resp = await fetch("agent/info", { headers: { Accept: "application/json" } });
      if (resp.status === 503) {
        status.textContent = "loading…";
        setTimeout(() => loadInfo(attempt + 1), Math.min(500 * 2 ** attempt, 5000));
        return;
      }
      if (!resp.ok) throw new Error("HTTP " + resp.status);
      const info = await resp.json();
      state.info = info;
      $("agent-name").textContent = info.name;
      document.title = info.name + " · chat";
      $("empty-title").textContent = "Chat with " + info.name;
      if (info.description) $("empty-desc").textContent = info.description;
      const meta = $("agent-meta");
      meta.textContent = "";
      const reg = info.registered_model || {};
      if (reg.name && reg.version) meta.append(textEl("span", reg.name + " v" + reg.version, "pill"));
      const git = info.git || {};
      if (git.commit) {
        const commit = textEl("span", String(git.commit).slice(0, 7) + (git.dirty ? "+dirty" : ""),
          "pill mono");
        commit.title = "git commit " + git.commit + (git.branch ? " on " + git.branch : "");
        meta.append(commit);
      }
      if (!meta.childNodes.length) meta.append(textEl("span", "ready", "pill ok"));
    } catch (_) {
      status.textContent = "server unreachable";
      status.className = "pill bad";
      setTimeout(() => loadInfo(attempt + 1), 5000);
    }
  }

  // --- the conversation --------------------------------------------------------------------
  function addUserTurn(text) {
    $("empty").hidden = true;
    const li = document.createElement("li");
    li.className = "turn user";
    li.append(textEl("div", text, "bubble"));
    log.append(li);
    window.scrollTo(0, document.body.scrollHeight);
  }

  function addAgentTurn() {
    const li = document.createElement("li");
    li.className = "turn agent";
    li.setAttribute("aria-busy", "true");
    const avatar = document.createElement("div");
    avatar.className = "agent-avatar";
    avatar.setAttribute("aria-hidden", "true");
    const body = document.createElement("div");
    body.className = "agent-body";
    const typing = document.createElement("div");
    typing.className = "typing";
    typing.setAttribute("aria-label", "The agent is answering");
    typing.append(document.createElement("span"), document.createElement("span"),
      document.createElement("span"));
    body.append(typing);
    li.append(avatar, body);
    log.append(li);
    window.scrollTo(0, document.body.scrollHeight);
    return { li, body, typing, texts: new Map(), tools: new Map(), output: [], pending: new Set() };
  }

  function textBlock(turn, itemId) {
    let block = turn.texts.get(itemId);
    if (!block) {
      const el = document.createElement("div");
      el.className = "answer markdown";
      turn.body.insertBefore(el, turn.typing);
      block = { el, text: "", done: false };
      turn.texts.set(itemId, block);
    }
    return block;
  }

  function schedule(turn, block) {
    turn.pending.add(block);
    if (turn.frame) return;
    turn.frame = requestAnimationFrame(() => {
      turn.frame = 0;
      for (const b of turn.pending) renderMarkdown(b.el, b.text);
      turn.pending.clear();
      scrollDown();
    });
  }

  function toolCard(turn, callId, name) {
    let card = turn.tools.get(callId);
    if (!card) {
      const details = document.createElement("details");
      details.className = "tool";
      const summary = document.createElement("summary");
      const icon = document.createElement("span");
      icon.className = "icon wrench";
      icon.setAttribute("aria-hidden", "true");
      const label = textEl("span", "Tool call", "tool-label");
      const nameEl = textEl("code", name || "tool", "tool-name");
      const status = textEl("span", "running", "pill");
      summary.append(icon, label, nameEl, status);
      const args = document.createElement("div");
      args.className = "tool-section";
      details.append(summary, args);
      turn.body.insertBefore(details, turn.typing);
      card = { details, nameEl, status, args, output: null };
      turn.tools.set(callId, card);
    }
    return card;
  }

  function pretty(text) {
    try { return JSON.stringify(JSON.parse(text), null, 2); } catch (_) { return String(text); }
  }

  function showToolCall(turn, item) {
    const card = toolCard(turn, item.call_id || item.id, item.name);
    card.nameEl.textContent = item.name || "tool";
    card.args.textContent = "";
    card.args.append(textEl("h4", "Arguments"), textEl("pre", pretty(item.arguments || "{}")));
  }

  function showToolOutput(turn, item) {
    const card = toolCard(turn, item.call_id, null);
    if (!card.output) {
      card.output = document.createElement("div");
      card.output.className = "tool-section";
      card.details.append(card.output);
    }
    card.output.textContent = "";
    const out = typeof item.output === "string" ? item.output : JSON.stringify(item.output);
    card.output.append(textEl("h4", "Output"), textEl("pre", pretty(out)));
    card.status.textContent = "done";
    card.status.className = "pill ok";
  }

  function showError(turn, message, requestId) {
    const box = document.createElement("div");
    box.className = "error";
    box.setAttribute("role", "alert");
    box.append(textEl("strong", "Something went wrong. "), textEl("span", message));
    if (requestId) {
      const rid = textEl("p", "", "rid");
      rid.append("Request id: ", textEl("code", requestId));
      box.append(rid);
    }
    turn.body.insertBefore(box, turn.typing);
  }

  function messageText(item) {
    const parts = Array.isArray(item.content) ? item.content : [];
    return parts.map((p) => (p && typeof p.text === "string" ? p.text : "")).join("");
  }

  function handleEvent(turn, ev) {
    switch (ev.type) {
      case "response.output_text.delta": {
        const block = textBlock(turn, ev.item_id || "msg");
        if (!turn.firstToken) {
          turn.firstToken = true;
          requestAnimationFrame(() => window.__chat.marks.push(
            { name: "first-token", t: performance.now() }));
        }
        block.text += ev.delta || "";
        schedule(turn, block);
        break;
      }
      case "response.output_item.done": {
        const item = ev.item || {};
        if (item.type === "message") {
          const block = textBlock(turn, item.id || "msg");
          const text = messageText(item);
          if (text) block.text = text;
          block.done = true;
          schedule(turn, block);
          turn.output.push(item);
        } else if (item.type === "function_call") {
          showToolCall(turn, item);
          turn.output.push(item);
        } else if (item.type === "function_call_output") {
          showToolOutput(turn, item);
          turn.output.push(item);
        } else if (item.type) {
          turn.output.push(item);
        }
        break;
      }
      case "error": {
        const err = ev.error || ev;
        turn.failed = true;
        showError(turn, err.message || "the agent failed", err.request_id || turn.requestId);
        break;
      }
      default:
        break;
    }
  }

  async function readStream(turn, resp) {
    const reader = resp.body.getReader();
    const decoder = new TextDecoder();
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buf.indexOf("\n\n")) >= 0) {
        const frame = buf.slice(0, cut);
        buf = buf.slice(cut + 2);
        for (const line of frame.split("\n")) {
          if (!line.startsWith("data:")) continue;
          const data = line.slice(5).trim();
          if (data === "[DONE]") return;
          try { handleEvent(turn, JSON.parse(data)); } catch (_) { /* not JSON: skip */ }
        }
      }
    }
  }

  // Streamed text without its output_item.done (a cut stream): still part of the history.
  function collectOutput(turn) {
    const seen = new Set(turn.output.filter((i) => i.type === "message").map((i) => i.id || "msg"));
    const out = turn.output.slice();
    for (const [id, block] of turn.texts) {
      if (!seen.has(id) && block.text) {
        out.push({ type: "message", id: id, role: "assistant",
          content: [{ type: "output_text", text: block.text }] });
      }
    }
    return out;
  }

  async function send(text) {
    if (state.busy || !text.trim()) return;
    const requestId = newId();
    addUserTurn(text);
    const userItem = { role: "user", content: text };
    const input = state.history.concat([userItem]);
    const turn = addAgentTurn();
    turn.requestId = requestId;
    const controller = new AbortController();
    state.controller = controller;
    setBusy(true);
    window.__chat.marks.push({ name: "send", t: performance.now() });
    window.__chat.requests.push(input);
    let resp;
    try {
      resp = await fetch("responses", {
        method: "POST",
        headers: { "Content-Type": "application/json", Accept: "text/event-stream",
          "X-Request-Id": requestId, "X-MLflow-App-Agent-Trace": "always" },
        body: JSON.stringify({ input: input, stream: true }),
        signal: controller.signal,
      });
      turn.traceId = resp.headers.get(TRACE_HEADER);
      if (!resp.ok) {
        let message = "the server answered HTTP " + resp.status;
        let rid = resp.headers.get("x-request-id") || requestId;
        try {
          const body = await resp.json();
          if (body && body.error) { message = body.error.message; rid = body.error.request_id || rid; }
        } catch (_) { /* not JSON */ }
        turn.failed = true;
        showError(turn, message, rid);
      } else {
        await readStream(turn, resp);
      }
    } catch (err) {
      if (err && err.name === "AbortError") {
        turn.stopped = true;
      } else {
        turn.failed = true;
        turn.unreachable = true;
        showError(turn, "Can't reach the server. Check your connection or whether the app is " +
          "running, then send your message again.", null);
      }
    } finally {
      finishTurn(turn, userItem);
      state.controller = null;
      setBusy(false);
    }
  }

  function finishTurn(turn, userItem) {
    if (turn.frame) { cancelAnimationFrame(turn.frame); turn.frame = 0; }
    for (const b of turn.texts.values()) renderMarkdown(b.el, b.text);
    turn.typing.remove();
    turn.li.removeAttribute("aria-busy");
    for (const card of turn.tools.values()) {
      if (card.status.textContent === "running") {
        card.status.textContent = turn.stopped || turn.failed ? "no output" : "called";
      }
    }
    const output = collectOutput(turn);
    if (turn.stopped) turn.body.append(textEl("p", "Stopped.", "note"));
    if (!turn.unreachable && (output.length || !turn.failed)) {
      state.history.push(userItem, ...output);
    }
    if (!turn.failed && output.length) turn.body.append(feedbackBar(turn));
    turn.li.dataset.requestId = turn.requestId;
    if (turn.traceId) turn.li.dataset.traceId = turn.traceId;
    turn.li.classList.add("done");
    scrollDown();
  }

  // --- feedback ---------------------------------------------------------------------------
  function feedbackBar(turn) {
    const bar = document.createElement("div");
    bar.className = "feedback";
    const up = button("", "btn icon-btn thumb up", "Good answer");
    const down = button("", "btn icon-btn thumb down", "Bad answer");
    for (const b of [up, down]) b.setAttribute("aria-pressed", "false");
    const copy = button("", "btn icon-btn copy", "Copy answer");
    const status = textEl("span", "", "fb-status");
    status.setAttribute("role", "status");
    const commentForm = document.createElement("form");
    commentForm.className = "comment";
    commentForm.hidden = true;
    const cid = "c-" + turn.requestId;
    const label = textEl("label", "What was wrong? (optional)", "comment-label");
    label.htmlFor = cid;
    const area = document.createElement("textarea");
    area.id = cid;
    area.rows = 2;
    area.maxLength = 5000;
    area.placeholder = "Tell the team what the answer should have been";
    const submit = document.createElement("button");
    submit.type = "submit";
    submit.className = "btn primary small";
    submit.textContent = "Send feedback";
    commentForm.append(label, area, submit);

    let value = null;
    // one request at a time, in click order: a thumbs-down still in flight must not land
    // after (and overwrite) the comment sent right behind it
    let queue = Promise.resolve();
    function post(v, comment) {
      value = v;
      queue = queue.then(() => send(v, comment));
      return queue;
    }
    async function send(v, comment) {
      up.setAttribute("aria-pressed", String(v === true));
      down.setAttribute("aria-pressed", String(v === false));
      status.textContent = "Saving…";
      status.className = "fb-status";
      const body = { value: v };
      if (turn.traceId) body.trace_id = turn.traceId; else body.request_id = turn.requestId;
      if (comment) body.comment = comment;
      try {
        const resp = await fetch("feedback", { method: "POST",
          headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
        const data = await resp.json().catch(() => ({}));
        if (!resp.ok) throw new Error((data.error && data.error.message) || "HTTP " + resp.status);
        status.textContent = comment ? "Thanks, your comment was recorded." : "Thanks for the feedback.";
        status.className = "fb-status ok";
        turn.li.dataset.assessmentId = data.assessment_id || "";
      } catch (err) {
        status.textContent = "Feedback not saved: " + err.message;
        status.className = "fb-status bad";
      }
    }
    up.addEventListener("click", () => { commentForm.hidden = true; post(true, null); });
    down.addEventListener("click", () => {
      commentForm.hidden = false;
      post(false, null);
      area.focus();
    });
    commentForm.addEventListener("submit", (e) => {
      e.preventDefault();
      post(value === null ? false : value, area.value.trim());
      commentForm.hidden = true;
    });
    copy.addEventListener("click", async () => {
      const text = Array.from(turn.texts.values()).map((b) => b.text).join("\n\n");
      try { await navigator.clipboard.writeText(text); status.textContent = "Copied."; }
      catch (_) { status.textContent = "Copy failed: select the text instead."; }
    });
    const row = document.createElement("div");
    row.className = "fb-row";
    row.append(up, down, copy, status);
    bar.append(row, commentForm);
    return bar;
  }

  // --- wiring -----------------------------------------------------------------------------
  function autosize() {
    prompt.style.height = "auto";
    prompt.style.height = Math.min(prompt.scrollHeight, 240) + "px";
  }
  prompt.addEventListener("input", autosize);
  prompt.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      form.requestSubmit();
    }
  });
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const text = prompt.value;
    if (!text.trim() || state.busy) return;
    prompt.value = "";
    autosize();
    send(text);
  });
  stopBtn.addEventListener("click", () => { if (state.controller) state.controller.abort(); });
  $("new-chat").addEventListener("click", () => {
    if (state.controller) state.controller.abort();
    state.history = [];
    log.textContent = "";
    $("empty").hidden = false;
    prompt.focus();
  });
  document.addEventListener("keydown", (e) => {
    if (e.key === "Escape" && state.controller) state.controller.abort();
  });

  showUser();
  loadInfo(0);
  prompt.focus();
})();
