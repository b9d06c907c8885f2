// ReactID Studio timeline editor: the body of gr.HTML(js_on_load=...).
// In scope (from Gradio): element, trigger, props, server, upload, watch. vis-timeline is loaded by `head`.
//
// props.value is a JSON string {"timeline": <timeline document>, "colors": [...]}. Every edit (drag,
// resize, move to another row, add, delete, caption) rebuilds the document from the items, sets
// props.value and fires the "input" event; Python validates it and answers with `problems` (a prop this
// script watches) without touching the value. When Python replaces the value (undo, import, plan,
// subject changes) the `value` watcher rebuilds the items.
(function () {
  "use strict";
  const root = element.querySelector(".rt-root") || element;
  const vis = window.vis;
  if (!vis || !vis.Timeline) {
    root.textContent = "The timeline editor could not load its library (vis-timeline). Reload the page.";
    return;
  }
  root.innerHTML = "";

  // ---- layout -------------------------------------------------------------------------------
  const toolbar = document.createElement("div");
  toolbar.className = "rt-toolbar";
  const mkButton = (label, title, cls, fn) => {
    const b = document.createElement("button");
    b.type = "button";
    b.textContent = label;
    b.title = title;
    b.className = "rt-btn " + cls;
    b.addEventListener("click", fn);
    toolbar.appendChild(b);
    return b;
  };
  const hint = document.createElement("span");
  hint.className = "rt-hint";
  hint.textContent =
    "Drag a block to move it (or onto another row) · drag an edge to resize · double-click empty space to add, a block to edit its caption · Delete or × removes · Ctrl+wheel zooms";
  const holder = document.createElement("div");
  holder.className = "rt-vis";
  root.appendChild(toolbar);
  root.appendChild(holder);

  // ---- state --------------------------------------------------------------------------------
  let doc = null; // the last timeline document (as sent or received)
  let colors = [];
  let gridMs = 250;
  let durMs = 4000;
  let nextId = 1;
  let lastAdd = null; // the last block a double-click added: {group, start, t}
  let seq = 0;
  let problems = [];
  let indexOf = {}; // item id -> the index of its action in the document Python validated
  const items = new vis.DataSet();
  const groups = new vis.DataSet();

  const parse = (v) => {
    try {
      const o = typeof v === "string" ? JSON.parse(v) : v;
      return o && o.timeline && Array.isArray(o.timeline.subjects) ? o : null;
    } catch (e) {
      return null;
    }
  };
  const toMs = (t) => Math.round(Number(t) * 1000);
  const snapMs = (m) => Math.round(m / gridMs) * gridMs;
  const val = (d) => (d && typeof d.valueOf === "function" ? d.valueOf() : Number(d));
  const secs = (m) => {
    const s = Math.round(val(m)) / 1000;
    return (Math.round(s * 100) / 100).toString();
  };
  const subjectIndex = (sid) => (doc ? doc.subjects.findIndex((s) => s.id === sid) : -1);

  function itemTemplate(item) {
    const span = document.createElement("span");
    span.className = "rt-caption";
    span.textContent = item.content; // never innerHTML: captions are user text
    return span;
  }
  function groupTemplate(group) {
    const wrap = document.createElement("span");
    wrap.className = "rt-group";
    const sw = document.createElement("span");
    sw.className = "rt-swatch";
    sw.style.background = group.color || "#888";
    const name = document.createElement("span");
    name.className = "rt-group-name";
    name.textContent = group.name;
    const kind = document.createElement("span");
    kind.className = "rt-group-kind";
    kind.textContent = group.kind || "";
    wrap.appendChild(sw);
    wrap.appendChild(name);
    wrap.appendChild(kind);
    return wrap;
  }

  function itemClass(sidx, bad) {
    return "rt-item rt-s" + (sidx % 6) + (bad ? " rt-bad" : "");
  }

  // ---- the document <-> items ---------------------------------------------------------------
  // A block whose end comes before its start (possible in an imported file) is drawn the right way
  // round, outlined as a problem, and sent back as it is until the user drags it: only Python's
  // "Fix problems" repairs it, and says so.
  function currentDoc(order) {
    const subjects = doc.subjects.map((s) => Object.assign({}, s, { actions: [] }));
    const byId = {};
    const ids = {};
    subjects.forEach((s) => ((byId[s.id] = s), (ids[s.id] = [])));
    items.get().forEach((it) => {
      const s = byId[it.group];
      if (!s) return;
      const a = Math.round(val(it.start)) / 1000;
      const b = Math.round(val(it.end)) / 1000;
      s.actions.push({ start: it.reversed ? b : a, end: it.reversed ? a : b, text: String(it.content || ""), _id: it.id });
    });
    subjects.forEach((s) => {
      s.actions.sort((a, b) => a.start - b.start || a.end - b.end);
      s.actions.forEach((a, j) => {
        if (order) order[a._id] = j;
        delete a._id;
      });
    });
    return Object.assign({}, doc, { subjects: subjects });
  }

  function emit(kind) {
    // Python sorts each subject's actions exactly so: a problem's action index is then this order.
    indexOf = {};
    doc = currentDoc(indexOf);
    seq += 1;
    props.value = JSON.stringify({ timeline: doc, colors: colors, edit: kind, seq: seq });
    trigger("input");
    applyMarks();
  }

  function build(o, firstTime) {
    const old = doc;
    doc = o.timeline;
    colors = o.colors || colors;
    gridMs = 4000 / (doc.fps || 16);
    const newDur = toMs(doc.duration);
    const durationChanged = newDur !== durMs;
    durMs = newDur;
    groups.clear();
    groups.add(
      doc.subjects.map((s, i) => ({
        id: s.id,
        order: i,
        name: s.name,
        kind: s.kind,
        color: colors[i % colors.length],
        className: "rt-grow rt-g" + (i % 6),
      }))
    );
    items.clear();
    indexOf = {};
    const list = [];
    doc.subjects.forEach((s, i) => {
      (s.actions || []).forEach((a, j) => {
        const reversed = toMs(a.end) < toMs(a.start);
        const id = nextId++;
        indexOf[id] = j;
        list.push({
          id: id,
          group: s.id,
          start: toMs(reversed ? a.end : a.start),
          end: toMs(reversed ? a.start : a.end),
          reversed: reversed,
          content: a.text,
          className: itemClass(i, false),
        });
      });
    });
    items.add(list);
    timeline.setOptions(windowOptions());
    if (firstTime || durationChanged || !old) {
      fitWindow(false);
    }
    applyMarks();
  }

  function fitWindow(animate) {
    const pad = Math.max(gridMs, Math.round(durMs * 0.03));
    timeline.setWindow(-pad, durMs + pad, { animation: !!animate });
  }

  function windowOptions() {
    // Keep a little space past the end so the last block's edge can be grabbed.
    const pad = Math.max(gridMs, Math.round(durMs * 0.03));
    return { min: -pad, max: durMs + pad, zoomMin: Math.max(gridMs * 2, 200), zoomMax: durMs + 2 * pad };
  }

  function applyMarks() {
    if (!doc) return;
    // A problem names (subject id, action index) in the document's order: actions sorted by start.
    const bad = {};
    problems.forEach((p) => {
      if (p.subject_id == null || p.action_index == null) return;
      (bad[p.subject_id + "#" + p.action_index] = bad[p.subject_id + "#" + p.action_index] || []).push(p.message);
    });
    const updates = [];
    doc.subjects.forEach((s, i) => {
      items.get({ filter: (it) => it.group === s.id }).forEach((it) => {
        const msgs = bad[s.id + "#" + indexOf[it.id]];
        const cls = itemClass(i, !!msgs);
        const title = msgs ? msgs.join("\n") : it.content + " (" + secs(it.start) + "–" + secs(it.end) + "s)";
        if (it.className !== cls || it.title !== title) updates.push({ id: it.id, className: cls, title: title });
      });
    });
    if (updates.length) items.update(updates);
  }

  // ---- caption editing in place ----------------------------------------------------------------
  let editing = null;
  function editCaption(id) {
    closeEditor(false);
    const it = items.get(id);
    if (!it) return;
    timeline.setSelection([id]);
    const el = holder.querySelector(".vis-item.vis-selected") || holder.querySelector(".vis-item");
    const input = document.createElement("input");
    input.type = "text";
    input.className = "rt-caption-input";
    input.value = it.content;
    input.maxLength = 200;
    input.setAttribute("aria-label", "caption");
    const rr = root.getBoundingClientRect();
    if (el) {
      const r = el.getBoundingClientRect();
      input.style.left = Math.max(0, r.left - rr.left) + "px";
      input.style.top = r.top - rr.top + "px";
      input.style.width = Math.max(160, r.width) + "px";
      input.style.height = Math.max(24, r.height) + "px";
    }
    root.appendChild(input);
    editing = { id: id, input: input };
    input.addEventListener("keydown", (ev) => {
      ev.stopPropagation();
      if (ev.key === "Enter") closeEditor(true);
      else if (ev.key === "Escape") closeEditor(false);
    });
    input.addEventListener("blur", () => closeEditor(true));
    input.focus();
    input.select();
  }
  function closeEditor(commit) {
    if (!editing) return;
    const { id, input } = editing;
    editing = null;
    const text = input.value.replace(/\s+/g, " ").trim();
    input.remove();
    const it = items.get(id);
    if (commit && it && text !== it.content) {
      items.update({ id: id, content: text });
      emit("caption");
    }
  }

  // ---- vis-timeline ---------------------------------------------------------------------------
  const options = {
    editable: { add: true, updateTime: true, updateGroup: true, remove: true, overrideItems: false },
    itemsAlwaysDraggable: { item: true, range: true },
    selectable: true,
    multiselect: false,
    stack: false, // overlaps stay visible (and are reported) rather than silently restacked
    orientation: { axis: "top", item: "top" },
    showCurrentTime: false,
    showMajorLabels: false,
    // No start/end here: with them vis-timeline keeps its root hidden until a range change; the
    // window is set once the first draw is complete.
    onInitialDrawComplete: () => fitWindow(false),
    zoomKey: "ctrlKey",
    horizontalScroll: false,
    verticalScroll: false,
    maxHeight: 420,
    margin: { item: { horizontal: 0, vertical: 8 }, axis: 6 },
    moment: (d) => vis.moment(d).utc(),
    format: { minorLabels: (date) => secs(date) + "s" },
    snap: (date) => new Date(snapMs(val(date))),
    template: itemTemplate,
    groupTemplate: groupTemplate,
    groupOrder: "order",
    tooltipOnItemUpdateTime: { template: (it) => secs(it.start) + "s – " + secs(it.end) + "s" },
    onMoving: (item, callback) => {
      let s = snapMs(val(item.start));
      let e = snapMs(val(item.end));
      const before = items.get(item.id);
      const oldLen = before ? val(before.end) - val(before.start) : e - s;
      if (Math.abs(e - s - oldLen) < 1) {
        // a move: keep the length, stay inside [0, duration]
        if (s < 0) { s = 0; e = oldLen; }
        if (e > durMs) { e = durMs; s = Math.max(0, durMs - oldLen); }
      } else {
        // a resize: stay inside, keep at least one latent frame
        s = Math.max(0, s);
        e = Math.min(durMs, e);
        if (e - s < gridMs) {
          if (before && Math.abs(val(before.start) - s) < 1) e = s + gridMs;
          else s = e - gridMs;
        }
      }
      item.start = new Date(s);
      item.end = new Date(e);
      callback(item);
    },
    onMove: (item, callback) => {
      item.reversed = false; // dragged: the user set its times
      callback(item);
      setTimeout(() => emit("move"), 0);
    },
    onAdd: (item, callback) => {
      if (!doc || !doc.subjects.length) return callback(null);
      const s0 = Math.min(Math.max(0, snapMs(val(item.start))), durMs - gridMs);
      const e0 = Math.min(durMs, s0 + Math.max(gridMs, snapMs(1000)));
      // One double-click, one block: on a busy machine hammer.js sometimes reports the same doubletap twice
      // (seen in CI: a "new action" block left under the one being captioned).
      const group = item.group == null ? doc.subjects[0].id : item.group;
      const now = Date.now();
      if (lastAdd && lastAdd.group === group && lastAdd.start === s0 && now - lastAdd.t < 1000) return callback(null);
      lastAdd = { group: group, start: s0, t: now };
      item.id = nextId++;
      item.start = new Date(s0);
      item.end = new Date(e0);
      item.type = "range";
      item.reversed = false;
      item.content = "new action";
      item.group = group;
      item.className = itemClass(Math.max(0, subjectIndex(item.group)), false);
      callback(item);
      setTimeout(() => {
        emit("add");
        editCaption(item.id);
      }, 0);
    },
    onUpdate: (item, callback) => {
      callback(null); // the caption is edited in place instead of through a dialog
      editCaption(item.id);
    },
    onRemove: (item, callback) => {
      callback(item);
      setTimeout(() => emit("delete"), 0);
    },
  };
  const timeline = new vis.Timeline(holder, items, groups, options);

  // A click on a block tells the page where it starts (the label review tab seeks its player there).
  timeline.on("click", (ev) => {
    const it = ev && ev.item != null ? items.get(ev.item) : null;
    if (!it) return;
    const detail = { subject: it.group, start: Math.round(val(it.start)) / 1000, end: Math.round(val(it.end)) / 1000, text: it.content };
    element.dispatchEvent(new CustomEvent("rt-item-select", { bubbles: true, detail: detail }));
  });

  mkButton("−", "Zoom out", "rt-zoom-out", () => timeline.zoomOut(0.5));
  mkButton("+", "Zoom in", "rt-zoom-in", () => timeline.zoomIn(0.5));
  mkButton("Fit", "Show the whole video", "rt-fit", () => fitWindow(true));
  toolbar.appendChild(hint);

  // Keys act on the widget after the user clicked inside it (vis-timeline does not focus it).
  root.tabIndex = 0;
  let active = false;
  document.addEventListener("pointerdown", (ev) => { active = root.contains(ev.target); }, true);
  document.addEventListener("keydown", (ev) => {
    if (!active || !document.body.contains(root) || editing) return;
    const t = ev.target;
    if (t && (t.tagName === "INPUT" || t.tagName === "TEXTAREA" || t.isContentEditable)) return;
    const sel = timeline.getSelection();
    if ((ev.key === "Delete" || ev.key === "Backspace") && sel.length) {
      ev.preventDefault();
      items.remove(sel);
      emit("delete");
    } else if ((ev.key === "Enter" || ev.key === "F2") && sel.length) {
      ev.preventDefault();
      editCaption(sel[0]);
    } else if ((ev.ctrlKey || ev.metaKey) && ev.key.toLowerCase() === "z") {
      ev.preventDefault();
      trigger(ev.shiftKey ? "redo" : "undo");
    } else if ((ev.ctrlKey || ev.metaKey) && ev.key.toLowerCase() === "y") {
      ev.preventDefault();
      trigger("redo");
    }
  });

  // ---- values from Python -----------------------------------------------------------------------
  function receive(firstTime) {
    const o = parse(props.value);
    if (!o) return;
    if (!firstTime && doc && JSON.stringify(o.timeline) === JSON.stringify(currentDoc())) {
      doc = o.timeline; // same actions: keep the items (and the selection) as they are
      return;
    }
    closeEditor(false);
    build(o, firstTime);
  }
  problems = Array.isArray(props.problems) ? props.problems : [];
  receive(true);
  watch("value", () => receive(false));
  watch("problems", () => {
    problems = Array.isArray(props.problems) ? props.problems : [];
    applyMarks();
  });

  // For tests and debugging: the live objects.
  root.__reactidTimeline = element.__reactidTimeline = { timeline: timeline, items: items, groups: groups, currentDoc: () => currentDoc() };
  root.setAttribute("data-ready", "1");
})();
