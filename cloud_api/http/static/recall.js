// Recall search (component lot → LOTs and serials, CSV export) and the defect list with counts.
PAGES.recall = {
  async render(arg) {
    const [kind, lot] = arg && arg.includes(":") ? arg.split(/:(.*)/s) : ["", arg || ""];
    const box = $("page-recall");
    box.innerHTML = `<h2>${esc(t("recall"))}</h2><form class="inline" id="recallForm">
        <div><label>${esc(t("kind"))}</label><select id="recallKind"><option value="">${esc(t("anyKind"))}</option>
          <option value="sma_spring">sma_spring</option><option value="busbar">busbar</option></select></div>
        <div><label>${esc(t("componentLot"))}</label><input id="recallLot" size="24" value="${esc(lot)}" required></div>
        <button type="submit">${esc(t("search"))}</button>
        <button type="button" class="secondary" id="recallCsv">${esc(t("exportCsv"))}</button></form><div id="recallBody"></div>`;
    if (kind && ![...$("recallKind").options].some(o => o.value === kind)) $("recallKind").add(new Option(kind, kind));
    $("recallKind").value = kind;
    const query = () => {
      const params = new URLSearchParams({lot: $("recallLot").value.trim(), lang});
      if ($("recallKind").value) params.set("kind", $("recallKind").value);
      return params;
    };
    $("recallForm").onsubmit = e => { e.preventDefault(); location.hash = `recall/${$("recallKind").value}:${$("recallLot").value.trim()}`; };
    $("recallCsv").onclick = async () => {
      if (!$("recallLot").value.trim()) return;
      const params = query(); params.set("format", "csv");
      if (await download(`/api/v1/trace/components?${params}`, `recall-${$("recallLot").value.trim()}.csv`)) setMessage(t("csvSaved"));
    };
    if (!lot) return;
    const {status, body} = await api(`/api/v1/trace/components?${query()}`);
    if (status !== 200) { $("recallBody").innerHTML = `<p class="error">${esc(body.message)}</p>`; return; }
    const d = body.data;
    const rows = d.lots.map(l => `<tr><td><a href="#lot/${esc(l.lot_number)}">${esc(l.lot_number)}</a></td><td class="${esc(l.lot_status)}">${esc(l.lot_status)}</td>
      <td>${esc(l.production_date)}</td><td>${esc(l.component_kind)}</td><td>${esc(l.process_name)}</td><td>${time(l.consumed_at)}</td>
      <td>${esc(l.worker_id || "")} ${esc(l.station || "")}</td><td>${l.serials.map(s => `<a href="#serial/${esc(s.serial_number)}" class="${esc(s.status)}">${esc(s.serial_number.slice(-4))}</a>`).join(" ")}</td></tr>`);
    const counts = Object.entries(d.serial_counts || {}).map(([k, v]) => `${esc(k)} ${v}`).join(" · ");
    $("recallBody").innerHTML = `<p id="recallSummary">${esc(t("lotCount"))} <b>${d.lot_count}</b> · ${esc(t("serialCount"))} <b>${d.serial_count}</b> ${counts ? "· " + counts : ""}</p>
      ${table([t("lot"), t("status"), t("productionDay"), t("kind"), t("process"), t("consumedAt"), t("worker"), t("serials")], rows)}`;
  },
};

PAGES.defects = {
  async render() {
    const box = $("page-defects");
    if (!box.dataset.ready || box.dataset.ready !== lang) {
      box.dataset.ready = lang;
      box.innerHTML = `<h2>${esc(t("defects"))}</h2><form class="inline" id="defectForm">
        <div><label>${esc(t("from"))}</label><input type="date" id="defFrom"></div>
        <div><label>${esc(t("to"))}</label><input type="date" id="defTo"></div>
        <div><label>${esc(t("process"))}</label><select id="defProcess"><option value="">${esc(t("allProcesses"))}</option>
          ${[1, 2, 3, 4, 5, 6, 7, 8].map(n => `<option>PROC-00${n}</option>`).join("")}</select></div>
        <button type="submit">${esc(t("search"))}</button></form><div id="defectBody"></div>`;
      $("defectForm").onsubmit = e => { e.preventDefault(); this.load(); };
    }
    await this.load();
  },
  async load() {
    // Empty dates: the server's default window (the last 7 days up to now), in the factory's zone, whatever zone
    // this browser is in; the dates it answers fill the form.
    const params = new URLSearchParams();
    if ($("defFrom").value) params.set("from", $("defFrom").value);
    if ($("defTo").value) params.set("to", $("defTo").value);
    if ($("defProcess").value) params.set("process_id", $("defProcess").value);
    const {status, body} = await api(`/api/v1/defects?${params}`);
    if (status !== 200) { $("defectBody").innerHTML = `<p class="error">${esc(body.message)}</p>`; return; }
    const d = body.data;
    if (!$("defFrom").value) $("defFrom").value = d.from_time.slice(0, 10);  // ISO with the factory's offset
    if (!$("defTo").value) $("defTo").value = d.to_time.slice(0, 10);
    const rows = d.defects.map(x => `<tr><td>${time(x.complete_time)}</td><td>${esc(x.process_name)}</td>
      <td><a href="#lot/${esc(x.lot_number)}">${esc(x.lot_number)}</a></td>
      <td>${x.serial_number ? `<a href="#serial/${esc(x.serial_number)}">${esc(x.serial_number)}</a>` : ""}</td>
      <td class="FAIL">${esc(x.cause || x.failure_reasons.join("; "))}</td>
      <td>${x.measurements.filter(m => m.out_of_limits).map(m => `${esc(m.characteristic)} ${esc(m.value)}${esc(m.unit || "")}`).join(", ")}</td>
      <td>${esc(x.worker_id)}</td><td>${esc(x.station)}</td></tr>`);
    $("defectBody").innerHTML = `<p>${esc(t("total"))} <b id="defectTotal">${d.total}</b></p><div class="grid2">
      <div><h3>${esc(t("byProcess"))}</h3>${table([t("process"), {label: t("count"), num: 1}], d.by_process.map(c => `<tr><td>${esc(c.process_id)}</td><td class="num">${c.count}</td></tr>`))}</div>
      <div><h3>${esc(t("byCause"))}</h3>${table([t("process"), t("cause"), {label: t("count"), num: 1}], d.by_cause.map(c => `<tr><td>${esc(c.process_id)}</td><td>${esc(c.cause)}</td><td class="num">${c.count}</td></tr>`))}</div></div>
      <h3>${esc(t("defects"))}</h3>${table([t("time"), t("process"), t("lot"), t("serial"), t("cause"), t("measurements"), t("worker"), t("station")], rows)}`;
  },
  onLive(events) { if (events.some(e => e.kind === "result" || e.kind === "reset")) this.load(); },
};
