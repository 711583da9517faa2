// flowdeck: in-place selection and live updates of the Usage tab. The pages work without this
// script (every state is a URL); it swaps in the same server-rendered fragments.
(() => {
  "use strict";

  document.addEventListener("click", (event) => {
    const button = event.target.closest("[data-copy]");
    if (!button) return;
    const input = document.querySelector(button.dataset.copy);
    input.select();
    if (navigator.clipboard) navigator.clipboard.writeText(input.value).catch(() => {});
    button.textContent = "Copied";
    setTimeout(() => { button.textContent = "Copy"; }, 1500);
  });

  const relative = (us) => {
    const seconds = (Date.now() * 1000 - us) / 1e6;
    if (seconds < 45) return "just now";
    for (const [size, unit] of [[86400, "d"], [3600, "h"], [60, "min"]]) {
      if (seconds >= size) return `${Math.floor(seconds / size)} ${unit} ago`;
    }
    return "just now";
  };
  setInterval(() => {
    document.querySelectorAll("time[data-relative]").forEach((t) => { t.textContent = relative(Number(t.dataset.relative)); });
  }, 30000);

  const usage = document.querySelector("[data-usage]");
  if (!usage) return;
  const flowId = usage.dataset.flowId;
  const main = document.getElementById("usage-main");
  const detail = document.getElementById("usage-detail");
  const placeholder = '<div class="placeholder" data-testid="detail-placeholder"><p>Select an execution to see its arguments, the data after each node and, if it failed, why.</p></div>';
  let page = Number(usage.dataset.page) || 1;
  let selected = usage.dataset.selected || null;
  let fresh = 0; // executions started since this page was shown, when it is not page 1

  const here = () => `/flows/${flowId}/usage?page=${page}` + (selected ? `&execution=${encodeURIComponent(selected)}` : "");

  async function loadMain() {
    const response = await fetch(`/flows/${flowId}/usage/main?page=${page}` + (selected ? `&execution=${encodeURIComponent(selected)}` : ""));
    if (response.ok) { main.innerHTML = await response.text(); fresh = 0; }
  }

  async function loadDetail() {
    if (!selected) { detail.innerHTML = placeholder; return; }
    const response = await fetch(`/executions/${encodeURIComponent(selected)}/panel`);
    if (response.ok) detail.innerHTML = await response.text();
  }

  function markSelected() {
    main.querySelectorAll("[data-testid=execution-item]").forEach((item) => {
      item.classList.toggle("selected", item.dataset.executionId === selected);
    });
  }

  main.addEventListener("click", async (event) => {
    if (event.metaKey || event.ctrlKey || event.shiftKey) return; // a new tab keeps its own URL
    const choice = event.target.closest("[data-select]");
    if (choice) {
      event.preventDefault();
      selected = choice.dataset.select;
      markSelected();
      history.pushState(null, "", here());
      await loadDetail();
      return;
    }
    const link = event.target.closest(".pagination a[data-page], [data-testid=new-executions]");
    if (link) {
      event.preventDefault();
      page = Number(link.dataset.page || 1);
      history.pushState(null, "", here());
      await loadMain();
    }
  });

  window.addEventListener("popstate", async () => {
    const url = new URL(location.href);
    page = Number(url.searchParams.get("page")) || 1;
    selected = url.searchParams.get("execution");
    await Promise.all([loadMain(), loadDetail()]);
  });

  // live: at most one refresh of each part in flight, and a last one after the burst
  const refresher = (load) => {
    let running = false, again = false;
    const run = async () => {
      if (running) { again = true; return; }
      running = true;
      try { await load(); } finally {
        running = false;
        if (again) { again = false; setTimeout(run, 50); }
      }
    };
    return run;
  };
  const refreshMain = refresher(async () => { await loadMain(); markSelected(); });
  const refreshDetail = refresher(loadDetail);

  const source = new EventSource(`/api/flows/${flowId}/events`);
  source.addEventListener("execution", (event) => {
    const summary = JSON.parse(event.data);
    if (page === 1) {
      refreshMain();
    } else if (summary.status === "pending" && summary.steps_done === 0 && !main.querySelector(`[data-execution-id="${summary.id}"]`)) {
      fresh += 1; // another page: the list stays where the user is; a link says what is new
      const link = main.querySelector("[data-testid=new-executions]");
      if (link) { link.hidden = false; link.dataset.page = "1"; link.textContent = `${fresh} new — show`; }
    }
    if (summary.id === selected) refreshDetail();
  });
  source.addEventListener("reload", () => { refreshMain(); refreshDetail(); });
})();
