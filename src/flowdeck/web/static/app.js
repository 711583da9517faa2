// flowdeck: in-place selection, filters and live updates of the Usage tab. The pages work without
// this script (every state is a URL, the forms are plain GET forms); it swaps in the same
// server-rendered fragments.
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

  // times: how long ago (kept fresh), and start times in the reader's own time zone
  const relative = (us) => {
    const seconds = (Date.now() * 1000 - us) / 1e6;
    if (seconds < 45) return "just now";
    for (const [size, unit] of [[86400, "d"], [3600, "h"], [60, "min"]]) {
      if (seconds >= size) return `${Math.floor(seconds / size)} ${unit} ago`;
    }
    return "just now";
  };
  const two = (n) => String(n).padStart(2, "0");
  const clock = (us) => {
    const moment = new Date(us / 1000);
    const time = `${two(moment.getHours())}:${two(moment.getMinutes())}:${two(moment.getSeconds())}`;
    if (moment.toDateString() === new Date().toDateString()) return time;
    return `${moment.toLocaleDateString(undefined, { month: "short", day: "numeric" })} ${time}`;
  };
  const localize = (root) => {
    root.querySelectorAll("time[data-clock]").forEach((t) => {
      const us = Number(t.dataset.clock);
      t.textContent = clock(us);
      t.title = `${relative(us)} · ${new Date(us / 1000).toLocaleString()}`;
    });
  };
  localize(document);
  setInterval(() => {
    document.querySelectorAll("time[data-relative]").forEach((t) => { t.textContent = relative(Number(t.dataset.relative)); });
    localize(document);
  }, 30000);

  // Escape hides a tooltip until the pointer or the focus moves on
  document.addEventListener("keydown", (event) => {
    if (event.key !== "Escape") return;
    const holder = document.activeElement && document.activeElement.closest("a, .status-dot");
    if (holder) holder.classList.add("tooltip-off");
    document.querySelectorAll(".status-dot:hover, a:hover").forEach((el) => el.classList.add("tooltip-off"));
  });
  const clear = (event) => { if (event.target.classList) event.target.classList.remove("tooltip-off"); };
  document.addEventListener("focusout", clear);
  document.addEventListener("mouseout", clear);

  const usage = document.querySelector("[data-usage]");
  if (!usage) return;
  const flowId = usage.dataset.flowId;
  const main = document.getElementById("usage-main");
  const detail = document.getElementById("usage-detail");
  const filterPart = document.getElementById("usage-filter"); // the insights and the filter form
  const lost = document.querySelector("[data-testid=connection-lost]");
  const deleted = document.querySelector("[data-testid=flow-deleted]");
  const placeholder = '<div class="placeholder" data-testid="detail-placeholder"><p>Select an execution to see its arguments, the data after each node and, if it failed, why.</p></div>';
  let page = Number(usage.dataset.page) || 1;
  let selected = usage.dataset.selected || null;
  let query = usage.dataset.query || ""; // the filter, as the URL says it (but page and execution)
  let known = Number(usage.dataset.total) || 0; // matching executions when this page was shown

  const here = () => `/flows/${flowId}/usage?` + [query, `page=${page}`, selected && `execution=${encodeURIComponent(selected)}`].filter(Boolean).join("&");
  const narrow = () => window.matchMedia("(max-width: 900px)").matches;

  // a fragment from the server, swapped into its place unless a newer one was asked for meanwhile
  // (quick keys or clicks must not leave an older answer on screen), or unless it is what the part
  // already shows: a live refresh that changes nothing leaves the page as it is (a click in
  // progress on a row that would be replaced between its press and its release is lost)
  const asked = new Map();
  const shown = new Map();
  async function swap(into, url) {
    const ticket = (asked.get(into) || 0) + 1;
    asked.set(into, ticket);
    if (url === null) { shown.delete(into); return false; }
    const response = await fetch(url);
    const html = response.ok ? await response.text() : null;
    if (html === null || asked.get(into) !== ticket) return false;
    if (shown.get(into) === html) return true;
    shown.set(into, html);
    into.innerHTML = html;
    localize(into);
    return true;
  }

  async function loadMain() {
    const url = `/flows/${flowId}/usage/main?` + [query, `page=${page}`].filter(Boolean).join("&");
    if (!(await swap(main, url))) return;
    const listed = main.querySelector("[data-testid=listed]");
    page = Number(listed.dataset.page) || page; // a page past the last is the last
    known = Number(listed.dataset.total) || 0;
    markSelected();
  }

  async function loadDetail() {
    usage.classList.toggle("detail-open", Boolean(selected));
    if (!selected) { await swap(detail, null); detail.innerHTML = placeholder; return; }
    await swap(detail, `/executions/${encodeURIComponent(selected)}/panel`);
  }

  async function loadFilter() {
    await swap(filterPart, `/flows/${flowId}/usage/filter?${query}`);
  }

  async function total(filter) {
    const response = await fetch(`/api/flows/${flowId}/executions?` + [filter, "per_page=1"].filter(Boolean).join("&"));
    return response.ok ? (await response.json()).total : known;
  }

  function markSelected() {
    main.querySelectorAll("[data-testid=execution-item]").forEach((item) => {
      item.classList.toggle("selected", item.dataset.executionId === selected);
    });
  }

  async function select(id) {
    selected = id;
    markSelected();
    history.pushState(null, "", here());
    await loadDetail();
    if (narrow()) usage.scrollIntoView({ block: "start" });
  }

  function fromUrl(url) {
    const params = new URLSearchParams(url.search);
    page = Number(params.get("page")) || 1;
    selected = params.get("execution");
    params.delete("page");
    params.delete("execution");
    query = params.toString();
  }

  async function filterBy(params) {
    query = params.toString();
    page = 1;
    history.pushState(null, "", here());
    await Promise.all([loadMain(), loadFilter()]);
  }

  usage.addEventListener("click", async (event) => {
    if (event.metaKey || event.ctrlKey || event.shiftKey) return; // a new tab keeps its own URL
    const choice = event.target.closest("[data-select]");
    if (choice) { event.preventDefault(); await select(choice.dataset.select); return; }
    const group = event.target.closest("[data-filter]");
    if (group) {
      event.preventDefault();
      await filterBy(new URL(group.href, location.href).searchParams);
      return;
    }
    const back = event.target.closest("[data-testid=back-to-list]");
    if (back) {
      event.preventDefault();
      selected = null;
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

  usage.addEventListener("submit", async (event) => {
    const rerun = event.target.closest("[data-rerun]");
    if (rerun) {
      event.preventDefault();
      const button = rerun.querySelector("button");
      button.disabled = true;
      const response = await fetch(`/api/executions/${encodeURIComponent(rerun.dataset.rerun)}/rerun`, { method: "POST" });
      const body = await response.json().catch(() => ({}));
      button.disabled = false;
      if (response.ok) await select(body.execution_id); // followed live, like any selected execution
      else rerun.querySelector("[data-testid=rerun-error]").textContent = body.detail || `re-run refused (${response.status})`;
      return;
    }
    const jump = event.target.closest("[data-testid=page-jump]");
    if (jump) {
      event.preventDefault();
      page = Math.max(1, Number(jump.elements.page.value) || 1);
      history.pushState(null, "", here());
      await loadMain();
      return;
    }
    const form = event.target.closest("[data-testid=filters]");
    if (!form) return;
    event.preventDefault();
    const params = new URLSearchParams();
    for (const [name, value] of new FormData(form)) {
      if (!value) continue;
      if (name === "param") {
        const at = value.indexOf("=");
        if (at > 0) params.append(`param.${value.slice(0, at).trim()}`, value.slice(at + 1).trim());
      } else if (name === "since" || name === "until") {
        // the inputs say UTC, to the second (a browser leaves out ":00" seconds)
        params.append(name, value.length === 16 ? `${value}:00Z` : `${value}Z`);
      } else {
        params.append(name, value);
      }
    }
    await filterBy(params);
  });
  usage.addEventListener("change", (event) => {
    if (event.target.matches("[data-testid=status-filter]")) event.target.form.requestSubmit();
  });

  // Up and Down move the selection in the list; Enter (on the focused row's link) opens it
  main.addEventListener("keydown", async (event) => {
    if (event.key !== "ArrowDown" && event.key !== "ArrowUp") return;
    const rows = [...main.querySelectorAll("[data-testid=execution-item] [data-select]")];
    if (!rows.length) return;
    event.preventDefault();
    const at = rows.indexOf(document.activeElement.closest("[data-select]"));
    const next = rows[Math.min(rows.length - 1, Math.max(0, at === -1 ? 0 : at + (event.key === "ArrowDown" ? 1 : -1)))];
    next.focus();
    await select(next.dataset.select);
  });

  window.addEventListener("popstate", async () => {
    fromUrl(new URL(location.href));
    await Promise.all([loadMain(), loadDetail(), loadFilter()]);
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
  const refreshMain = refresher(loadMain);
  const refreshDetail = refresher(loadDetail);
  // on another page the list stays put: the totals move, and a link says how many new ones match
  const refreshCounts = refresher(async () => {
    const matching = await total(query);
    const all = query ? await total("") : matching;
    const stat = main.querySelector("[data-testid=stat-total]");
    if (stat) stat.textContent = all.toLocaleString("en-US");
    const fresh = matching - known;
    const link = main.querySelector("[data-testid=new-executions]");
    if (link && fresh > 0) { link.hidden = false; link.dataset.page = "1"; link.textContent = `${fresh} new — show`; }
  });

  const source = new EventSource(`/api/flows/${flowId}/events`);
  let broken = false;
  source.addEventListener("open", () => {
    lost.hidden = true;
    if (broken) { broken = false; refreshMain(); refreshDetail(); } // catch up on what was missed
  });
  source.addEventListener("error", () => { broken = true; lost.hidden = false; });
  source.addEventListener("execution", (event) => {
    const summary = JSON.parse(event.data);
    if (page === 1) refreshMain(); else refreshCounts();
    if (summary.id === selected) refreshDetail();
  });
  source.addEventListener("reload", () => { refreshMain(); refreshDetail(); });
  source.addEventListener("deleted", () => { deleted.hidden = false; });
})();
