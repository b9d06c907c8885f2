// Keyboard shortcuts of an annotation review tab: the body of gr.HTML(js_on_load=...).
// In scope (from Gradio): element, props. The element's data-prefix names the tab's root
// ("rt-mask-review" or "rt-label-review"); a key clicks the tab's own button, so the shortcut and the
// button run the same Python. Keys act only while the tab is on screen and never while typing in a
// text box, a select or the timeline's caption editor. props.value may hold {"fps": N} (label tab).
(function () {
  "use strict";
  const box = element.querySelector(".rt-review-keys");
  const root = box ? box.dataset.prefix : "";
  if (!root) return;
  const base = root.replace(/-review$/, ""); // "rt-mask" / "rt-label": the buttons' id prefix
  const key = "__rtReviewKeys_" + root;
  if (window[key]) {
    window[key].props = props; // the tab was mounted again: keep one listener, with the new props
    return;
  }
  const state = { props: props };
  window[key] = state;

  const byId = (suffix) => document.getElementById(base + "-" + suffix);
  const textOf = (suffix) => {
    const el = byId(suffix);
    const input = el && el.querySelector("textarea, input");
    return input ? input.value : "";
  };
  const focusBox = (suffix) => {
    const el = byId(suffix);
    const input = el && el.querySelector("textarea, input");
    if (input) input.focus();
  };
  const fps = () => {
    try {
      const o = JSON.parse(state.props.value || "{}");
      return Number(o.fps) > 0 ? Number(o.fps) : 16;
    } catch (e) {
      return 16;
    }
  };
  const video = () => {
    const el = byId("video");
    return el ? el.querySelector("video") : null;
  };
  const stepVideo = (frames) => {
    const v = video();
    if (!v) return;
    v.pause();
    const t = Math.max(0, Math.min((v.duration || 1e9) - 1e-3, v.currentTime + frames / fps()));
    v.currentTime = t;
  };

  document.addEventListener("keydown", (ev) => {
    const tab = document.getElementById(root);
    if (!tab || tab.offsetParent === null) return; // the tab is not on screen
    if (ev.ctrlKey || ev.metaKey || ev.altKey || (ev.repeat && ev.key.length === 1)) return;
    const t = ev.target;
    if (t && (t.tagName === "INPUT" || t.tagName === "TEXTAREA" || t.tagName === "SELECT" || t.isContentEditable)) return;
    const k = ev.key.length === 1 ? ev.key.toLowerCase() : ev.key;
    const click = (suffix) => {
      const b = byId(suffix);
      if (!b) return;
      ev.preventDefault();
      b.click();
    };
    if (k === "ArrowLeft") {
      if (base === "rt-label") { ev.preventDefault(); stepVideo(-1); } else click("prev");
    } else if (k === "ArrowRight") {
      if (base === "rt-label") { ev.preventDefault(); stepVideo(1); } else click("next");
    } else if (k === "a") {
      click(base === "rt-label" ? "approve" : "accept");
    } else if (k === "f" && base === "rt-mask") {
      click("fix");
    } else if (k === "r") {
      if (!textOf("reason").trim()) { ev.preventDefault(); focusBox("reason"); } else click("reject");
    } else if (k === "n") {
      click("next-clip");
    }
  });

  // The label tab: a click on a timeline block plays the clip from the block's start.
  if (base === "rt-label") {
    document.addEventListener("rt-item-select", (ev) => {
      if (!ev.target || !ev.target.closest || !ev.target.closest("#" + base + "-timeline")) return;
      const v = video();
      if (!v || !ev.detail) return;
      v.currentTime = Math.max(0, Number(ev.detail.start) || 0);
    });
  }
})();
