// Compare modes, sliders and keyboard navigation. Without JavaScript the page is side by side.
(() => {
  const frames = [...document.querySelectorAll("section.frame")];
  const bar = document.querySelector(".modes");
  bar.hidden = false;
  let current = frames.findIndex((f) => "#" + f.id === location.hash);

  const apply = (section) => {
    const slider = section.querySelector(".slider");
    const after = section.querySelector(".stage.pair figure.after");
    if (!slider || !after) return;
    const mode = document.body.dataset.mode;
    slider.parentElement.hidden = mode === "side";
    after.style.clipPath = mode === "swipe" ? `inset(0 0 0 ${slider.value}%)` : "";
    after.style.opacity = mode === "onion" ? String(slider.value / 100) : "";
  };
  const setMode = (mode) => {
    document.body.dataset.mode = mode;
    bar.querySelectorAll("button").forEach((b) => b.setAttribute("aria-pressed", String(b.dataset.mode === mode)));
    frames.forEach(apply);
  };
  const go = (i) => {
    if (!frames.length) return;
    current = Math.max(0, Math.min(frames.length - 1, i));
    frames.forEach((f, n) => f.classList.toggle("current", n === current));
    frames[current].scrollIntoView({ block: "start" });
    try { history.replaceState(null, "", "#" + frames[current].id); } catch (e) { /* file:// */ }
  };

  bar.addEventListener("click", (e) => { if (e.target.dataset.mode) setMode(e.target.dataset.mode); });
  frames.forEach((f) => { const s = f.querySelector(".slider"); if (s) s.addEventListener("input", () => apply(f)); });
  document.addEventListener("keydown", (e) => {
    if (e.ctrlKey || e.metaKey || e.altKey || e.target.tagName === "INPUT" && e.target.type !== "range") return;
    const action = { j: () => go(current + 1), n: () => go(current + 1), k: () => go(current - 1),
      p: () => go(current - 1), s: () => setMode("side"), w: () => setMode("swipe"),
      o: () => setMode("onion") }[e.key];
    if (action) { e.preventDefault(); action(); }
  });
  if (current >= 0) frames[current].classList.add("current");
})();
