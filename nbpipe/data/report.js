  // Optional: filter by state or bible. Without JavaScript every frame is shown.
  const bar = document.querySelector(".filters"); bar.hidden = false;
  bar.addEventListener("click", (e) => {
    const f = e.target.dataset.filter; if (f === undefined) return;
    const [kind, value] = f.split(":");
    document.querySelectorAll(".card").forEach((c) => {
      c.style.display = !f || c.dataset[kind] === value ? "" : "none";
    });
  });
