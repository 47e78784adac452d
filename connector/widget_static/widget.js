/*
 * LG ThinQ assistant — chat widget for partner websites.
 *
 * Embed:
 *   <script src="https://<assistant>/webhooks/widget/widget.js" defer></script>
 *   LGAssistantWidget.mount({ getToken: async () => "<JWT from your own server>" });
 *
 * mount(options) -> { open(), close(), destroy() }
 *   getToken   required; async function resolving to a sign-in token (JWT) that the
 *              partner's server signed for its signed-in user. Called when connecting
 *              and again whenever the assistant says the token expired.
 *   socketUrl  the assistant's socket; default: this script's URL with http(s) -> ws(s)
 *              and /widget.js -> /ws.
 *   title      heading of the chat panel; default "LG ThinQ assistant".
 *   container  element the widget is appended to; default document.body.
 *
 * No dependencies, no build step. Everything the server sends is rendered with
 * textContent / DOM APIs only (never innerHTML). CSS classes are prefixed "lgw-".
 */
(function () {
  "use strict";

  if (window.LGAssistantWidget && typeof window.LGAssistantWidget.mount === "function") {
    return; // the script was included twice: keep the first copy
  }

  // Captured at load time: document.currentScript is null once the script has run.
  var SCRIPT = document.currentScript || findOwnScript();
  var SCRIPT_SRC = SCRIPT && SCRIPT.src ? SCRIPT.src : "";

  var CLOSE_TOKEN = 4401;
  var CLOSE_ORIGIN = 4403;
  var CLOSE_PROTOCOL = 4400;
  var CLOSE_NOT_CONFIGURED = 4503;
  var BACKOFF_MIN_MS = 1000;
  var BACKOFF_MAX_MS = 30000;
  var PING_EVERY_MS = 25000;
  var SILENT_AFTER_MS = 60000; // no frame at all for this long: the connection is dead
  var BUSY_SAFETY_MS = 90000; // hide the typing indicator even if "busy off" got lost
  var TOKEN_MARGIN_S = 20; // fetch a new token rather than present one this close to expiry
  var MAX_MESSAGES = 500;
  var MAX_TEXT = 1000;
  var PHONE_QUERY = "(max-width: 479.98px)";
  var SVG_NS = "http://www.w3.org/2000/svg";
  var ICONS = {
    chat:
      "M12 3C6.48 3 2 6.94 2 11.8c0 2.54 1.23 4.83 3.2 6.43-.17 1.47-.83 2.86-1.9 3.77 " +
      "2.2.05 4.17-.74 5.6-1.93.99.26 2.03.4 3.1.4 5.52 0 10-3.94 10-8.67C22 6.94 17.52 3 12 3z",
    close:
      "M6.4 5 5 6.4 10.6 12 5 17.6 6.4 19l5.6-5.6 5.6 5.6 1.4-1.4-5.6-5.6L19 6.4 17.6 5 " +
      "12 10.6 6.4 5z",
    send: "M3.4 20.4 21.85 12.5c.8-.35.8-1.5 0-1.85L3.4 2.75a1 1 0 0 0-1.39 1.13L3.9 11 " +
      "13 11.6 3.9 12.2 2 19.27a1 1 0 0 0 1.4 1.13z",
  };
  var instances = 0;

  function findOwnScript() {
    var scripts = document.getElementsByTagName("script");
    for (var i = scripts.length - 1; i >= 0; i--) {
      if (/\/widget\.js(?:[?#]|$)/.test(scripts[i].src || "")) return scripts[i];
    }
    return null;
  }

  function siblingUrl(name) {
    if (!SCRIPT_SRC) return "";
    var url = new URL(SCRIPT_SRC, document.baseURI);
    url.hash = "";
    url.pathname = url.pathname.replace(/\/widget\.js$/, "/" + name);
    return url.href;
  }

  function toSocketUrl(value) {
    var url = new URL(value, document.baseURI);
    var scheme = url.protocol;
    if (scheme === "http:" || scheme === "ws:") scheme = "ws:";
    else if (scheme === "https:" || scheme === "wss:") scheme = "wss:";
    else throw new Error("LGAssistantWidget: socketUrl must be a ws(s) or http(s) URL");
    return scheme + "//" + url.host + url.pathname + url.search;
  }

  function defaultSocketUrl() {
    if (!SCRIPT_SRC) return "";
    var url = new URL(SCRIPT_SRC, document.baseURI);
    if (!/\/widget\.js$/.test(url.pathname)) return "";
    url.search = "";
    url.hash = "";
    url.pathname = url.pathname.replace(/\/widget\.js$/, "/ws");
    return toSocketUrl(url.href);
  }

  // ---- the stylesheet (one <link> per page, whatever the number of widgets) ----

  var style = { link: null, ready: false, waiting: [] };

  function stylesheetReady() {
    if (style.ready) return;
    style.ready = true;
    var waiting = style.waiting;
    style.waiting = [];
    for (var i = 0; i < waiting.length; i++) waiting[i]();
  }

  function ensureStylesheet() {
    var existing = document.querySelector("link[data-lgw-stylesheet]");
    if (existing) {
      if (existing !== style.link) {
        style.link = existing;
        stylesheetReady(); // added by an earlier copy or by the page itself
      }
      return;
    }
    var href = siblingUrl("widget.css");
    if (!href) {
      stylesheetReady();
      return;
    }
    var link = document.createElement("link");
    link.rel = "stylesheet";
    link.href = href;
    link.setAttribute("data-lgw-stylesheet", "");
    link.addEventListener("load", stylesheetReady);
    link.addEventListener("error", stylesheetReady);
    style.link = link;
    style.ready = false;
    // Unstyled widgets are worse than late ones, but never wait forever.
    setTimeout(stylesheetReady, 4000);
    (document.head || document.documentElement).appendChild(link);
  }

  function whenStyled(callback) {
    if (style.ready) callback();
    else style.waiting.push(callback);
  }

  ensureStylesheet();

  // ---- small DOM helpers ----

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    if (attrs) {
      for (var key in attrs) {
        if (!Object.prototype.hasOwnProperty.call(attrs, key)) continue;
        var value = attrs[key];
        if (value === null || value === undefined || value === false) continue;
        if (key === "text") node.textContent = String(value);
        else if (key === "className") node.className = value;
        else node.setAttribute(key, value === true ? "" : String(value));
      }
    }
    if (children) {
      for (var i = 0; i < children.length; i++) {
        var child = children[i];
        if (child === null || child === undefined) continue;
        node.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
      }
    }
    return node;
  }

  function icon(name) {
    var svg = document.createElementNS(SVG_NS, "svg");
    svg.setAttribute("viewBox", "0 0 24 24");
    svg.setAttribute("aria-hidden", "true");
    svg.setAttribute("focusable", "false");
    svg.setAttribute("class", "lgw-icon");
    var path = document.createElementNS(SVG_NS, "path");
    path.setAttribute("d", ICONS[name]);
    path.setAttribute("fill", "currentColor");
    svg.appendChild(path);
    return svg;
  }

  function srOnly(text, id) {
    return el("span", { className: "lgw-sr", id: id, text: text });
  }

  // Bot text with its http(s) URLs turned into links, built node by node.
  function appendLinkified(parent, text) {
    var pattern = /\bhttps?:\/\/[^\s<>"'`]+/gi;
    var last = 0;
    var match;
    while ((match = pattern.exec(text)) !== null) {
      var raw = trimUrl(match[0]);
      var start = match.index;
      var href = safeHref(raw);
      if (!href) continue;
      if (start > last) parent.appendChild(document.createTextNode(text.slice(last, start)));
      var link = el("a", {
        className: "lgw-link",
        href: href,
        target: "_blank",
        rel: "noopener noreferrer",
      });
      link.appendChild(document.createTextNode(raw));
      link.appendChild(srOnly(" (opens in a new tab)"));
      parent.appendChild(link);
      last = start + raw.length;
      pattern.lastIndex = last;
    }
    if (last < text.length) parent.appendChild(document.createTextNode(text.slice(last)));
  }

  function trimUrl(raw) {
    for (;;) {
      var tail = raw.charAt(raw.length - 1);
      if (".,;:!?*".indexOf(tail) >= 0) {
        raw = raw.slice(0, -1);
      } else if (tail === ")" && count(raw, "(") < count(raw, ")")) {
        raw = raw.slice(0, -1);
      } else if (tail === "]" && count(raw, "[") < count(raw, "]")) {
        raw = raw.slice(0, -1);
      } else {
        return raw;
      }
    }
  }

  function count(text, character) {
    return text.split(character).length - 1;
  }

  function safeHref(raw) {
    try {
      var url = new URL(raw);
      return url.protocol === "http:" || url.protocol === "https:" ? url.href : "";
    } catch (error) {
      return "";
    }
  }

  // exp of a JWT (seconds), read without verifying: only to avoid presenting a stale one.
  function tokenExpiry(token) {
    try {
      var part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
      while (part.length % 4) part += "=";
      var claims = JSON.parse(atob(part));
      return typeof claims.exp === "number" ? claims.exp : null;
    } catch (error) {
      return null;
    }
  }

  function isMessage(m) {
    return (
      m &&
      typeof m === "object" &&
      typeof m.id === "number" &&
      isFinite(m.id) &&
      (m.role === "user" || m.role === "bot") &&
      typeof m.text === "string"
    );
  }

  // ---- one widget ----

  function mount(options) {
    options = options || {};
    if (typeof options.getToken !== "function") {
      throw new TypeError("LGAssistantWidget.mount: options.getToken must be a function");
    }
    var socketUrl = options.socketUrl ? toSocketUrl(options.socketUrl) : defaultSocketUrl();
    if (!socketUrl) {
      throw new Error("LGAssistantWidget.mount: cannot tell the assistant's address; pass socketUrl");
    }
    ensureStylesheet();
    var title = options.title ? String(options.title) : "LG ThinQ assistant";
    var n = ++instances;
    var ids = {
      panel: "lgw-panel-" + n,
      title: "lgw-title-" + n,
      input: "lgw-input-" + n,
      badge: "lgw-badge-text-" + n,
      status: "lgw-status-" + n,
    };

    // --- state ---
    var entries = new Map(); // id -> {message, node, group}
    var order = []; // message ids, ascending
    var lastRead = 0;
    var isOpen = false;
    var destroyed = false;
    var ws = null;
    var generation = 0; // bumps whenever a socket is abandoned; stale events are ignored
    var connected = false; // "ready" received on the current socket
    var token = null;
    var reauthenticating = false; // reconnecting with a fresh token after a 4401
    var attempt = 0;
    var retryTimer = null;
    var pingTimer = null;
    var busyTimer = null;
    var lastFrameAt = 0;
    var stopped = false;
    var refusedReason = "";
    var pendingText = null; // sent, no echo yet: put back in the input if refused
    var separatorBefore = null;
    var usedGroups = new Set();

    // --- DOM ---
    var badgeCount = el("span", { className: "lgw-badge-count", "aria-hidden": "true" });
    var badgeText = srOnly("", ids.badge);
    var badge = el("span", { className: "lgw-badge", hidden: true }, [badgeCount, badgeText]);
    var launcher = el(
      "button",
      {
        type: "button",
        className: "lgw-launcher",
        "aria-label": "Open LG assistant chat",
        "aria-expanded": "false",
        "aria-controls": ids.panel,
        "aria-describedby": ids.badge,
      },
      [icon("chat"), badge]
    );

    var closeButton = el(
      "button",
      { type: "button", className: "lgw-close", "aria-label": "Close chat" },
      [icon("close")]
    );
    var header = el("div", { className: "lgw-header" }, [
      el("h2", { className: "lgw-title", id: ids.title, text: title }),
      closeButton,
    ]);

    var statusText = el("div", { className: "lgw-status", role: "status", id: ids.status });
    var retryButton = el("button", {
      type: "button",
      className: "lgw-retry",
      hidden: true,
      text: "Try again",
    });
    var statusBar = el("div", { className: "lgw-statusbar" }, [statusText, retryButton]);

    var emptyHint = el("p", {
      className: "lgw-empty",
      text: "Ask about your LG appliances — for example “Is my washer done?”",
    });
    var log = el(
      "div",
      {
        className: "lgw-log",
        role: "log",
        "aria-live": "polite",
        "aria-label": "Conversation",
        tabindex: "0",
      },
      [emptyHint]
    );
    var separator = el("div", { className: "lgw-separator" }, [
      el("span", { text: "New messages" }),
    ]);
    var typing = el("div", { className: "lgw-typing", hidden: true }, [
      el("span", { className: "lgw-dots", "aria-hidden": "true" }, [
        el("span"),
        el("span"),
        el("span"),
      ]),
      srOnly("Assistant is typing"),
    ]);
    var notice = el("div", { className: "lgw-notice", role: "alert", hidden: true });

    var input = el("input", {
      className: "lgw-input",
      id: ids.input,
      type: "text",
      maxlength: String(MAX_TEXT),
      autocomplete: "off",
      enterkeyhint: "send",
      placeholder: "Type your message…",
    });
    var sendButton = el(
      "button",
      { type: "submit", className: "lgw-send", "aria-label": "Send", disabled: true },
      [icon("send")]
    );
    var form = el("form", { className: "lgw-form", novalidate: true }, [
      el("label", { className: "lgw-sr", for: ids.input, text: "Message" }),
      input,
      sendButton,
    ]);

    var panel = el(
      "div",
      {
        className: "lgw-panel",
        id: ids.panel,
        role: "dialog",
        "aria-labelledby": ids.title,
        hidden: true,
      },
      [header, statusBar, log, typing, notice, form]
    );
    var root = el("div", { className: "lgw-root", hidden: true }, [panel, launcher]);

    // --- status and controls ---

    function setStatus(text, problem) {
      statusText.textContent = text;
      statusBar.classList.toggle("lgw-problem", !!problem);
    }

    function updateControls() {
      sendButton.disabled = !connected;
      if (connected) input.removeAttribute("aria-describedby");
      else input.setAttribute("aria-describedby", ids.status);
      updateGroups();
    }

    function showNotice(text) {
      notice.textContent = text;
      notice.hidden = false;
    }

    function hideNotice() {
      notice.hidden = true;
      notice.textContent = "";
    }

    function setBusy(on) {
      clearTimeout(busyTimer);
      busyTimer = null;
      var nearBottom = isNearBottom();
      typing.hidden = !on;
      if (on) {
        busyTimer = setTimeout(function () {
          typing.hidden = true;
        }, BUSY_SAFETY_MS);
        if (nearBottom) scrollToBottom();
      }
    }

    // --- messages ---

    function newestBotId() {
      for (var i = order.length - 1; i >= 0; i--) {
        if (entries.get(order[i]).message.role === "bot") return order[i];
      }
      return 0;
    }

    function unreadCount() {
      var unread = 0;
      for (var i = order.length - 1; i >= 0 && order[i] > lastRead; i--) {
        if (entries.get(order[i]).message.role === "bot") unread++;
      }
      return unread;
    }

    function updateBadge() {
      var unread = isOpen ? 0 : unreadCount();
      badge.hidden = unread === 0;
      badgeCount.textContent = unread > 99 ? "99+" : String(unread);
      badgeText.textContent =
        unread === 0 ? "" : unread === 1 ? "1 new message" : unread + " new messages";
    }

    function updateGroups() {
      var newest = newestBotId();
      entries.forEach(function (entry, id) {
        if (!entry.group) return;
        var done = usedGroups.has(id) || id < newest;
        entry.group.classList.toggle("lgw-quick-done", done);
        var buttons = entry.group.querySelectorAll("button");
        for (var i = 0; i < buttons.length; i++) buttons[i].disabled = done || !connected;
      });
    }

    function renderMessage(message) {
      var bot = message.role === "bot";
      var classes = "lgw-msg " + (bot ? "lgw-bot" : "lgw-user");
      if (bot && message.proactive) classes += " lgw-proactive";
      var node = el("div", { className: classes, "data-id": String(message.id) });
      if (bot && message.proactive) {
        var label = "Notification";
        var when = message.created_at ? new Date(message.created_at) : null;
        if (when && !isNaN(when.getTime())) {
          label +=
            " · " + when.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
        }
        node.appendChild(el("div", { className: "lgw-kicker", text: label }));
      }
      var bubble = el("div", { className: "lgw-bubble" }, [
        srOnly(bot ? "Assistant: " : "You: "),
      ]);
      if (bot) appendLinkified(bubble, message.text);
      else bubble.appendChild(document.createTextNode(message.text));
      node.appendChild(bubble);
      var group = null;
      var buttons = bot && Array.isArray(message.buttons) ? message.buttons : [];
      for (var i = 0; i < buttons.length; i++) {
        var choice = buttons[i];
        if (!choice || typeof choice.title !== "string" || typeof choice.payload !== "string") {
          continue;
        }
        if (!choice.title && !choice.payload) continue;
        if (!group) {
          group = el("div", {
            className: "lgw-quick",
            role: "group",
            "aria-label": "Quick replies",
          });
        }
        var button = el("button", {
          type: "button",
          className: "lgw-quick-btn",
          text: choice.title || choice.payload,
        });
        button.addEventListener("click", quickReplyHandler(message.id, choice, button));
        group.appendChild(button);
      }
      if (group) node.appendChild(group);
      return { node: node, group: group };
    }

    function quickReplyHandler(id, choice, button) {
      return function () {
        if (!connected || usedGroups.has(id) || id < newestBotId()) return;
        var frame = { type: "message", text: choice.payload || choice.title };
        if (choice.title) frame.title = choice.title;
        if (!send(frame)) return;
        usedGroups.add(id);
        button.classList.add("lgw-chosen");
        hideNotice();
        updateGroups();
        input.focus(); // the button just got disabled: keep the keyboard somewhere useful
      };
    }

    function addMessage(message) {
      if (!isMessage(message) || entries.has(message.id)) return false;
      var rendered = renderMessage(message);
      var entry = { message: message, node: rendered.node, group: rendered.group };
      var index = order.length;
      while (index > 0 && order[index - 1] > message.id) index--;
      order.splice(index, 0, message.id);
      entries.set(message.id, entry);
      var next = index + 1 < order.length ? entries.get(order[index + 1]).node : null;
      if (next && separator.parentNode && order[index + 1] === separatorBefore) next = separator;
      log.insertBefore(entry.node, next);
      emptyHint.hidden = true;
      while (order.length > MAX_MESSAGES) {
        var oldest = order.shift();
        var gone = entries.get(oldest);
        entries.delete(oldest);
        usedGroups.delete(oldest);
        if (gone.node.parentNode) gone.node.parentNode.removeChild(gone.node);
        if (oldest === separatorBefore) removeSeparator();
      }
      return true;
    }

    function addMessages(list, live) {
      var nearBottom = isNearBottom();
      var added = false;
      var own = false;
      for (var i = 0; i < list.length; i++) {
        if (addMessage(list[i])) {
          added = true;
          if (list[i].role === "user") {
            own = true;
            if (live) pendingText = null;
          }
        }
      }
      if (!added) return;
      updateGroups();
      updateBadge();
      if (isOpen && (nearBottom || own)) scrollToBottom();
      markRead();
    }

    function removeSeparator() {
      separatorBefore = null;
      if (separator.parentNode) separator.parentNode.removeChild(separator);
    }

    function placeSeparator() {
      removeSeparator();
      for (var i = 0; i < order.length; i++) {
        var entry = entries.get(order[i]);
        if (order[i] > lastRead && entry.message.role === "bot") {
          separatorBefore = order[i];
          log.insertBefore(separator, entry.node);
          return true;
        }
      }
      return false;
    }

    function isNearBottom() {
      return log.scrollHeight - log.scrollTop - log.clientHeight < 64;
    }

    function scrollToBottom() {
      log.scrollTop = log.scrollHeight;
    }

    function markRead() {
      if (!isOpen || !connected || document.visibilityState === "hidden") return;
      if (unreadCount() === 0) return;
      var newest = order[order.length - 1];
      if (send({ type: "read", up_to: newest })) {
        lastRead = newest;
        updateBadge();
      }
    }

    // --- the socket ---

    function send(frame) {
      if (!ws || ws.readyState !== WebSocket.OPEN) return false;
      ws.send(JSON.stringify(frame));
      return true;
    }

    function abandonSocket() {
      generation++;
      stopPing();
      var old = ws;
      ws = null;
      connected = false;
      if (old) {
        old.onopen = old.onmessage = old.onclose = old.onerror = null;
        try {
          old.close(1000);
        } catch (error) {
          /* already closing */
        }
      }
    }

    function tokenUsable() {
      if (!token) return false;
      var exp = tokenExpiry(token);
      return exp === null || exp - Date.now() / 1000 > TOKEN_MARGIN_S;
    }

    function connect() {
      clearTimeout(retryTimer);
      retryTimer = null;
      if (destroyed || stopped) return;
      abandonSocket();
      var gen = generation;
      setStatus("Connecting…");
      updateControls();
      if (tokenUsable()) {
        openSocket(gen);
        return;
      }
      token = null;
      var pending;
      try {
        pending = Promise.resolve(options.getToken());
      } catch (error) {
        pending = Promise.reject(error);
      }
      pending.then(
        function (value) {
          if (gen !== generation || destroyed) return;
          if (typeof value !== "string" || !value) {
            signInFailed(new Error("getToken() returned no token"));
            return;
          }
          token = value;
          openSocket(gen);
        },
        function (error) {
          if (gen !== generation || destroyed) return;
          signInFailed(error);
        }
      );
    }

    function signInFailed(error) {
      if (window.console && console.warn) {
        console.warn("LG assistant widget: could not get a sign-in token:", error);
      }
      if (navigator.onLine === false) {
        scheduleRetry(); // the network is down, not the sign-in: keep trying
        return;
      }
      stop("Could not sign in");
    }

    function openSocket(gen) {
      var socket;
      try {
        socket = new WebSocket(socketUrl);
      } catch (error) {
        scheduleRetry();
        return;
      }
      ws = socket;
      refusedReason = "";
      lastFrameAt = Date.now();
      socket.onopen = function () {
        if (gen !== generation) return;
        socket.send(JSON.stringify({ type: "hello", token: token }));
      };
      socket.onmessage = function (event) {
        if (gen !== generation) return;
        lastFrameAt = Date.now();
        var frame;
        try {
          frame = JSON.parse(event.data);
        } catch (error) {
          return;
        }
        if (frame && typeof frame === "object") handleFrame(frame);
      };
      socket.onclose = function (event) {
        if (gen !== generation) return;
        closed(event.code, event.reason);
      };
      socket.onerror = function () {
        /* a close event follows */
      };
    }

    function handleFrame(frame) {
      switch (frame.type) {
        case "ready":
          connected = true;
          attempt = 0;
          reauthenticating = false;
          setStatus("Connected");
          retryButton.hidden = true;
          if (typeof frame.last_read === "number" && frame.last_read > lastRead) {
            lastRead = frame.last_read;
          }
          setBusy(false);
          startPing();
          updateControls();
          addMessages(Array.isArray(frame.history) ? frame.history : [], false);
          if (isOpen && separatorBefore === null && placeSeparator()) {
            log.scrollTop = Math.max(0, separator.offsetTop - 8);
          }
          updateBadge();
          markRead();
          break;
        case "message":
          addMessages([frame.message], true);
          break;
        case "busy":
          setBusy(!!frame.on);
          break;
        case "read":
          if (typeof frame.last_read === "number" && frame.last_read > lastRead) {
            lastRead = frame.last_read;
            updateBadge();
          }
          break;
        case "error":
          showNotice(
            typeof frame.reason === "string" && frame.reason
              ? frame.reason
              : "The message was not sent."
          );
          if (pendingText !== null && !input.value) input.value = pendingText;
          pendingText = null;
          break;
        case "refused":
          refusedReason = typeof frame.reason === "string" ? frame.reason : "";
          break;
        default:
          break; // "pong" and anything newer than this script
      }
    }

    function closed(code, reason) {
      var why = refusedReason || reason || "";
      ws = null;
      connected = false;
      stopPing();
      setBusy(false);
      updateControls();
      if (code === CLOSE_TOKEN) {
        token = null;
        if (reauthenticating) {
          stop("Sign-in refused: " + (why || "the sign-in token was not accepted"));
          return;
        }
        reauthenticating = true;
        connect();
        return;
      }
      if (code === CLOSE_ORIGIN) {
        stop("Sign-in refused: " + (why || "this website may not use the assistant"));
        return;
      }
      if (code === CLOSE_PROTOCOL || code === CLOSE_NOT_CONFIGURED) {
        stop("Chat unavailable: " + (why || "the assistant cannot take chats right now"));
        return;
      }
      scheduleRetry();
    }

    function scheduleRetry() {
      if (destroyed || stopped) return;
      abandonSocket();
      clearTimeout(retryTimer);
      var base = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * Math.pow(2, attempt));
      attempt++;
      var delay = Math.min(BACKOFF_MAX_MS, Math.round(base * (0.8 + Math.random() * 0.4)));
      setStatus("Offline — retrying in " + Math.max(1, Math.round(delay / 1000)) + " s", true);
      updateControls();
      retryTimer = setTimeout(connect, delay);
    }

    function stop(text) {
      stopped = true;
      clearTimeout(retryTimer);
      retryTimer = null;
      abandonSocket();
      setBusy(false);
      setStatus(text, true);
      retryButton.hidden = false;
      updateControls();
    }

    function tryAgain() {
      if (destroyed) return;
      stopped = false;
      reauthenticating = false;
      attempt = 0;
      token = null;
      retryButton.hidden = true;
      if (isOpen) input.focus();
      connect();
    }

    function startPing() {
      stopPing();
      pingTimer = setInterval(function () {
        if (Date.now() - lastFrameAt > SILENT_AFTER_MS) {
          closed(1006, ""); // nothing heard for too long: treat as lost and reconnect
          return;
        }
        send({ type: "ping" });
      }, PING_EVERY_MS);
    }

    function stopPing() {
      clearInterval(pingTimer);
      pingTimer = null;
    }

    // --- open / close ---

    function open() {
      if (destroyed || isOpen) return;
      isOpen = true;
      panel.hidden = false;
      root.classList.add("lgw-open");
      launcher.setAttribute("aria-expanded", "true");
      var hasSeparator = placeSeparator();
      updateBadge();
      if (hasSeparator) log.scrollTop = Math.max(0, separator.offsetTop - 8);
      else scrollToBottom();
      input.focus();
      markRead();
    }

    function close() {
      if (destroyed || !isOpen) return;
      var focusInside = panel.contains(document.activeElement);
      isOpen = false;
      panel.hidden = true;
      root.classList.remove("lgw-open");
      launcher.setAttribute("aria-expanded", "false");
      removeSeparator();
      updateBadge();
      if (focusInside) launcher.focus();
    }

    function focusables() {
      var all = panel.querySelectorAll("button, input, a[href], [tabindex='0']");
      var visible = [];
      for (var i = 0; i < all.length; i++) {
        if (!all[i].disabled && all[i].getClientRects().length > 0) visible.push(all[i]);
      }
      return visible;
    }

    // --- events ---

    launcher.addEventListener("click", function () {
      if (isOpen) close();
      else open();
    });
    closeButton.addEventListener("click", function () {
      close();
      launcher.focus();
    });
    retryButton.addEventListener("click", tryAgain);
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var text = input.value.trim();
      if (!text || !connected) return;
      if (send({ type: "message", text: text.slice(0, MAX_TEXT) })) {
        pendingText = input.value;
        input.value = "";
        hideNotice();
      }
    });
    root.addEventListener("keydown", function (event) {
      if (event.key === "Escape" && isOpen) {
        event.preventDefault();
        event.stopPropagation();
        close();
        launcher.focus();
        return;
      }
      // Full-screen on a phone: keep Tab inside the panel, as it hides the page.
      if (event.key === "Tab" && isOpen && window.matchMedia(PHONE_QUERY).matches) {
        var items = focusables();
        if (!items.length) return;
        var first = items[0];
        var last = items[items.length - 1];
        if (event.shiftKey && document.activeElement === first) {
          event.preventDefault();
          last.focus();
        } else if (!event.shiftKey && document.activeElement === last) {
          event.preventDefault();
          first.focus();
        }
      }
    });

    function onVisibility() {
      if (document.visibilityState === "visible") markRead();
    }
    function onOnline() {
      if (retryTimer !== null) connect();
    }
    function onPageHide(event) {
      if (event.persisted) {
        // Going into the back/forward cache: an open socket would keep the page out.
        clearTimeout(retryTimer);
        retryTimer = null;
        abandonSocket();
      }
    }
    function onPageShow(event) {
      if (event.persisted && !destroyed && !stopped) connect();
    }
    document.addEventListener("visibilitychange", onVisibility);
    window.addEventListener("online", onOnline);
    window.addEventListener("pagehide", onPageHide);
    window.addEventListener("pageshow", onPageShow);

    function attach() {
      if (destroyed) return;
      var container = options.container || document.body;
      container.appendChild(root);
      whenStyled(function () {
        if (!destroyed) root.hidden = false;
      });
    }

    if (options.container || document.body) attach();
    else document.addEventListener("DOMContentLoaded", attach, { once: true });

    setStatus("Connecting…");
    connect();

    return {
      open: open,
      close: close,
      destroy: function () {
        if (destroyed) return;
        destroyed = true;
        clearTimeout(retryTimer);
        clearTimeout(busyTimer);
        abandonSocket();
        document.removeEventListener("visibilitychange", onVisibility);
        window.removeEventListener("online", onOnline);
        window.removeEventListener("pagehide", onPageHide);
        window.removeEventListener("pageshow", onPageShow);
        if (root.parentNode) root.parentNode.removeChild(root);
      },
    };
  }

  window.LGAssistantWidget = { mount: mount };
})();
