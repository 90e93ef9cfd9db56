// flowrun ui: one page, three views (runs, a run, a DAG's grid), read from the JSON API.
// Everything from the database is inserted as text (textContent, Text nodes, attributes):
// never as HTML. The run's SVG is drawn and escaped by the server, parsed as XML here.
"use strict";

(function () {
  const POLL_MS = 1000;
  // Tests and curious users read this: how many refreshes ran, and whether one is scheduled.
  const ui = { polls: 0, polling: false, view: null, readyMs: null };
  window.flowrunUi = ui;

  function h(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value);
    }
    for (const child of children) {
      if (child !== null && child !== undefined) node.append(child); // strings become Text nodes
    }
    return node;
  }

  function statusBadge(status) {
    return h("span", { class: "status st-" + status, text: status });
  }

  function runHref(runId) { return "/runs/" + encodeURIComponent(runId); }
  function dagHref(dag) { return "/dags/" + encodeURIComponent(dag); }

  function seconds(value) {
    if (value === null || value === undefined) return "-";
    if (value < 1) return (value * 1000).toFixed(0) + " ms";
    if (value < 120) return value.toFixed(2) + " s";
    if (value < 7200) return (value / 60).toFixed(1) + " min";
    return (value / 3600).toFixed(1) + " h";
  }

  function when(epoch) {
    if (epoch === null || epoch === undefined) return "-";
    const d = new Date(epoch * 1000);
    const pad = (n) => String(n).padStart(2, "0");
    return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + " " +
      pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds());
  }

  async function getJson(url) {
    const response = await fetch(url, { cache: "no-store" });
    let body;
    try { body = await response.json(); } catch (e) { body = { error: response.statusText }; }
    if (!response.ok) throw new Error(body.error || ("HTTP " + response.status));
    return body;
  }

  function showError(message) {
    setLive(false);
    const app = document.getElementById("app");
    app.replaceChildren(h("h1", { text: "Not found" }), h("p", { class: "error-box", id: "error", text: message }),
      h("p", {}, h("a", { href: "/", text: "All runs" })));
  }

  function crumbs(...items) {
    const nav = document.getElementById("crumbs");
    nav.replaceChildren(...items.map((item) => (item.href ? h("a", { href: item.href, text: item.text }) : h("span", { text: item.text }))));
  }

  function setLive(on) {
    ui.polling = on;
    document.body.dataset.polling = on ? "on" : "off";
    document.getElementById("live").hidden = !on;
  }

  // Refresh `load` every POLL_MS while `isFinal(data)` is false; stop for good once it is true.
  function poll(load, render, isFinal) {
    async function tick(first) {
      let data;
      try {
        data = await load();
      } catch (error) {
        showError(error.message);
        return;
      }
      if (!first) ui.polls += 1;
      await render(data, first);
      if (isFinal(data)) {
        setLive(false);
      } else {
        setLive(true);
        setTimeout(() => tick(false), POLL_MS);
      }
    }
    return tick(true);
  }

  // -- the runs page -----------------------------------------------------------------------
  async function runsView() {
    ui.view = "runs";
    crumbs({ text: "runs" });
    const params = new URLSearchParams(location.search);
    const dag = params.get("dag") || "";
    const status = params.get("status") || "";
    const app = document.getElementById("app");
    const dagSelect = h("select", { name: "dag", id: "filter-dag", onchange: (e) => e.target.form.submit() },
      h("option", { value: "", text: "all DAGs" }));
    const statusSelect = h("select", { name: "status", id: "filter-status", onchange: (e) => e.target.form.submit() },
      ...["", "SUCCESS", "FAILED", "RUNNING"].map((s) => h("option", { value: s, text: s || "any status", selected: s === status })));
    const form = h("form", { class: "filters", method: "get", action: "/" },
      h("label", {}, "DAG ", dagSelect), h("label", {}, "status ", statusSelect),
      dag ? h("a", { href: dagHref(dag), text: "grid of " + dag }) : null);
    const body = h("tbody");
    const table = h("table", { class: "data", id: "runs" },
      h("thead", {}, h("tr", {}, ...["run", "DAG", "status", "started", "duration", "tasks", "first failed task"].map((t) => h("th", { text: t, class: t === "duration" ? "num" : null })))),
      body);
    const count = h("p", { class: "muted", id: "runs-count" });
    app.replaceChildren(h("h1", { text: "Runs" }), form, table, count);

    const query = new URLSearchParams();
    if (dag) query.set("dag", dag);
    if (status) query.set("status", status);
    await poll(() => getJson("/api/runs?" + query.toString()), (data) => {
      body.replaceChildren(...data.runs.map(runRow));
      count.textContent = data.runs.length ? data.runs.length + " run(s), newest first" : "No runs match.";
    }, (data) => data.runs.every((r) => r.final));
    // The filter's DAG names after the table: on a long history they take longer to gather.
    await getJson("/api/dags").then((data) => {
      for (const name of data.dags) dagSelect.append(h("option", { value: name, text: name, selected: name === dag }));
      if (dag && !data.dags.includes(dag)) dagSelect.append(h("option", { value: dag, text: dag, selected: true }));
    }).catch(() => {});
  }

  function runRow(run) {
    const failed = run.first_failed;
    const done = Object.entries(run.counts).map(([s, n]) => n + " " + s.toLowerCase()).join(", ");
    return h("tr", { "data-run-id": run.run_id, "data-status": run.status },
      h("td", { class: "mono" }, h("a", { href: runHref(run.run_id), title: run.run_id, class: "run-link", text: run.run_id.slice(0, 12) })),
      h("td", {}, h("a", { href: dagHref(run.dag_name), text: run.dag_name })),
      h("td", { class: "status-cell" }, statusBadge(run.status)),
      h("td", { text: when(run.created_at) }),
      h("td", { class: "num", text: seconds(run.duration_s) }),
      h("td", { class: "muted", text: done }),
      h("td", { class: "first-failed" }, failed ? h("span", { title: failed.error || "", text: failed.task }) : ""));
  }

  // -- a run's page ------------------------------------------------------------------------
  async function runView(runId) {
    ui.view = "run";
    const app = document.getElementById("app");
    const badge = h("span", { id: "run-status" });
    const summary = h("div", { class: "summary", id: "run-summary" });
    const graph = h("div", { class: "graph", id: "graph" });
    const gantt = h("div", { class: "gantt", id: "gantt" });
    const taskBody = h("tbody");
    const tasks = h("table", { class: "data", id: "tasks" },
      h("thead", {}, h("tr", {}, ...["task", "status", "attempts", "started", "duration", "queued", "error"].map((t) => h("th", { text: t, class: ["attempts", "started", "duration", "queued"].includes(t) ? "num" : null })))),
      taskBody);
    const title = h("h1", {}, "Run ", h("span", { class: "mono", text: runId }), " ", badge);
    app.replaceChildren(title, summary, h("h2", { text: "Graph" }), graph,
      h("h2", { text: "Timeline" }), gantt, h("h2", { text: "Tasks" }), tasks);
    const unfolded = new Set();
    let drawn = null;
    graph.addEventListener("click", (event) => {
      const node = event.target.closest && event.target.closest("g.node");
      if (!node) return;
      const row = taskBody.querySelector('tr[data-task="' + CSS.escape(node.getAttribute("data-task")) + '"]');
      if (row) {
        for (const old of taskBody.querySelectorAll("tr.highlight")) old.classList.remove("highlight");
        row.classList.add("highlight");
        row.scrollIntoView({ block: "center" });
      }
    });

    await poll(() => getJson("/api/runs/" + encodeURIComponent(runId)), async (run) => {
      crumbs({ text: "runs", href: "/" }, { text: run.dag_name, href: dagHref(run.dag_name) }, { text: runId.slice(0, 12) });
      document.title = "flowrun: " + run.dag_name + " " + run.status;
      badge.replaceChildren(statusBadge(run.status));
      badge.dataset.status = run.status;
      renderSummary(summary, run);
      const signature = run.tasks.map((t) => t.status + (t.instances ? t.instances.map((i) => i.status).join("") : "")).join(",");
      if (signature !== drawn) {
        drawn = signature;
        await drawGraph(graph, runId);
      }
      renderGantt(gantt, run);
      renderTasks(taskBody, run, unfolded);
    }, (run) => run.final);
  }

  function renderSummary(summary, run) {
    const item = (label, value) => h("span", {}, label + " ", h("b", { text: value }));
    const parts = [
      item("DAG", run.dag_name), item("started", when(run.created_at)),
      item(run.final ? "took" : "running for", seconds(run.duration_s)),
      item("trigger", run.trigger === "schedule" ? "schedule, due " + when(run.scheduled_for) : run.trigger),
    ];
    if (run.resumed_from) parts.push(h("span", {}, "resumed from ", h("a", { href: runHref(run.resumed_from), class: "mono", text: run.resumed_from.slice(0, 12) })));
    if (run.first_failed) parts.push(item("first failure", run.first_failed.task));
    summary.replaceChildren(...parts);
  }

  async function drawGraph(graph, runId) {
    const response = await fetch("/api/runs/" + encodeURIComponent(runId) + "/svg", { cache: "no-store" });
    const text = await response.text();
    const doc = new DOMParser().parseFromString(text, "image/svg+xml");
    const svg = doc.documentElement;
    if (!response.ok || svg.nodeName !== "svg") {
      graph.replaceChildren(h("p", { class: "error-box", text: "cannot draw the DAG: " + (response.ok ? "bad SVG" : text) }));
      return;
    }
    graph.replaceChildren(document.importNode(svg, true));
  }

  function renderGantt(gantt, run) {
    const start = run.created_at;
    const bars = run.tasks.filter((t) => t.started_at !== null);
    let end = run.finished_at !== null ? run.finished_at : run.now;
    for (const t of bars) end = Math.max(end, t.finished_at !== null ? t.finished_at : run.now);
    const span = Math.max(end - start, 1e-6);
    const pct = (t) => (Math.min(Math.max((t - start) / span, 0), 1) * 100).toFixed(3) + "%";
    const rows = [h("div", { class: "row axis" }, h("div", { class: "label", text: "since the run started" }),
      h("div", { class: "ticks" }, h("span", { text: "0 s" }), h("span", { text: seconds(span) })))];
    for (const task of bars) {
      const stop = task.finished_at !== null ? task.finished_at : run.now;
      const bar = h("div", { class: "bar st-" + task.status, "data-task": task.name,
        title: task.name + ": " + task.status + ", attempt " + task.attempt + ", " + seconds(stop - task.started_at) + (task.queued_s ? ", queued " + seconds(task.queued_s) : "") });
      bar.style.left = pct(task.started_at);
      bar.style.width = "calc(" + pct(stop) + " - " + pct(task.started_at) + ")";
      const track = h("div", { class: "track" });
      for (const a of task.earlier_attempts || []) {  // retried attempts, before the last one
        if (a.started_at === null || a.finished_at === null) continue;
        const early = h("div", { class: "bar earlier st-FAILED", "data-task": task.name, "data-attempt": String(a.attempt),
          title: task.name + ": attempt " + a.attempt + " failed after " + seconds(a.finished_at - a.started_at) + (a.error ? ": " + a.error : "") });
        early.style.left = pct(a.started_at);
        early.style.width = "calc(" + pct(a.finished_at) + " - " + pct(a.started_at) + ")";
        track.append(early);
      }
      if (task.queued_s > 0) {
        const queued = h("div", { class: "queued", title: "waited " + seconds(task.queued_s) + " for a slot" });
        queued.style.left = pct(task.started_at - task.queued_s);
        queued.style.width = "calc(" + pct(task.started_at) + " - " + pct(task.started_at - task.queued_s) + ")";
        track.append(queued);
      }
      track.append(bar);
      rows.push(h("div", { class: "row" }, h("div", { class: "label", title: task.name, text: task.name + (task.attempt > 1 ? " (attempt " + task.attempt + ")" : "") }), track));
    }
    const idle = run.tasks.length - bars.length;
    if (idle) rows.push(h("div", { class: "row" }, h("div", { class: "label muted", text: idle + " task(s) did not start" }), h("div")));
    gantt.replaceChildren(...rows);
  }

  function taskRow(task, run, extraClass) {
    const offset = task.started_at === null ? "-" : "+" + seconds(task.started_at - run.created_at);
    const errorCell = h("td", { class: "error-cell" });
    if (task.error) errorCell.append(h("span", { class: "error-text", text: task.error }));
    if (task.traceback) {
      errorCell.append(h("details", {}, h("summary", { text: "traceback" }), h("pre", { class: "traceback", text: task.traceback })));
    }
    for (const warning of task.warnings || []) errorCell.append(h("div", { class: "warning", text: "warning: " + warning }));
    if (task.cached_from) errorCell.append(h("span", { class: "muted" }, "cached from ", h("a", { href: runHref(task.cached_from), class: "mono", text: task.cached_from.slice(0, 12) })));
    return h("tr", { "data-task": task.name, "data-status": task.status, class: extraClass || null },
      h("td", { class: "task-name mono", text: task.name }),
      h("td", { class: "status-cell" }, statusBadge(task.status)),
      h("td", { class: "num", text: String(task.attempt) }),
      h("td", { class: "num", text: offset }),
      h("td", { class: "num", text: seconds(task.duration_s) }),
      h("td", { class: "num", text: task.queued_s ? seconds(task.queued_s) : "-" }),
      errorCell);
  }

  function renderTasks(body, run, unfolded) {
    const rows = [];
    for (const task of run.tasks) {
      const row = taskRow(task, run);
      rows.push(row);
      if (!task.instances) continue;
      const open = unfolded.has(task.name);
      const n = task.instances.length;
      const button = h("button", { class: "fold", type: "button", "aria-expanded": String(open),
        text: (open ? "\u25be " : "\u25b8 ") + n + " instance" + (n === 1 ? "" : "s") });
      row.firstChild.append(button);
      const children = task.instances.map((inst) => {
        const child = taskRow({ ...inst, name: "[" + inst.name + "]" }, run, "instance");
        child.dataset.instanceOf = task.name;
        child.hidden = !open;
        return child;
      });
      button.addEventListener("click", () => {
        const now = !unfolded.has(task.name);
        if (now) unfolded.add(task.name); else unfolded.delete(task.name);
        button.textContent = (now ? "\u25be " : "\u25b8 ") + n + " instance" + (n === 1 ? "" : "s");
        button.setAttribute("aria-expanded", String(now));
        for (const child of children) child.hidden = !now;
      });
      rows.push(...children);
    }
    body.replaceChildren(...rows);
  }

  // -- a DAG's grid -------------------------------------------------------------------------
  async function gridView(dag) {
    ui.view = "grid";
    crumbs({ text: "runs", href: "/" }, { text: dag, href: "/?dag=" + encodeURIComponent(dag) }, { text: "grid" });
    const params = new URLSearchParams(location.search);
    const limit = params.get("limit") || "25";
    const app = document.getElementById("app");
    const holder = h("div", { id: "grid-holder" });
    const limitSelect = h("select", { name: "limit", onchange: (e) => e.target.form.submit() },
      ...["10", "25", "50", "100"].map((n) => h("option", { value: n, text: n, selected: n === limit })));
    app.replaceChildren(h("h1", {}, "DAG ", h("span", { class: "mono", text: dag })),
      h("form", { class: "filters", method: "get" }, h("label", {}, "last ", limitSelect, " runs"),
        h("a", { href: "/?dag=" + encodeURIComponent(dag), text: "list of its runs" })), holder);
    await poll(() => getJson("/api/dags/" + encodeURIComponent(dag) + "/grid?limit=" + encodeURIComponent(limit)), (grid) => {
      const head = h("tr", {}, h("th", { text: "task \\ run" }), ...grid.runs.map((run) =>
        h("th", { class: "run" }, h("a", { class: "cell st-" + run.status, href: runHref(run.run_id), title: run.run_id + " " + run.status + " " + when(run.created_at) }))));
      const rows = grid.tasks.map((row) => h("tr", { "data-task": row.task },
        h("th", { class: "mono", text: row.task }),
        ...row.cells.map((status, i) => h("td", {}, status === null
          ? h("a", { class: "cell none", title: "not in this run" })
          : h("a", { class: "cell st-" + status, "data-status": status, href: runHref(grid.runs[i].run_id), title: row.task + ": " + status + " in run " + grid.runs[i].run_id })))));
      const legend = h("p", { class: "legend muted" }, ...["SUCCESS", "FAILED", "SKIPPED", "OMITTED", "RUNNING", "PENDING"].map((status) =>
        h("span", {}, h("span", { class: "swatch st-" + status }), status.toLowerCase())));
      holder.replaceChildren(h("table", { class: "grid", id: "grid" }, h("thead", {}, head), h("tbody", {}, ...rows)),
        h("p", { class: "muted", text: grid.runs.length + " run(s), oldest on the left; a circle is the run, a square a task in it" }), legend);
    }, (grid) => grid.final);
  }

  function route() {
    const path = location.pathname;
    let match;
    if (path === "/") return runsView();
    if ((match = path.match(/^\/runs\/([^/]+)$/))) return runView(decodeURIComponent(match[1]));
    if ((match = path.match(/^\/dags\/([^/]+)$/))) return gridView(decodeURIComponent(match[1]));
    showError("no such page: " + path);
    return null;
  }

  document.addEventListener("DOMContentLoaded", () => {
    Promise.resolve(route()).finally(() => {
      ui.readyMs = performance.now(); // from navigation start to the first full render
      document.body.dataset.ready = "1";
    });
  });
})();
