import CDCCore
import Foundation
import Hummingbird

/// `GET /ui/review`: the review page. The page itself holds no data and no secret: its one inline
/// script (allowed by hash in the Content-Security-Policy, which allows nothing else: no other
/// script, no external asset, connections only to this server) asks the JSON API for the items with
/// the token the operator types, kept in the tab's sessionStorage (gone when the tab closes, never in
/// a cookie, a URL or the page). Values are put into the page as text, never as HTML.
enum ReviewPage {
    static let style = """
        body{font:14px system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse;margin:.5em 0}
        td,th{padding:4px 10px;border-bottom:1px solid #ddd;text-align:left;vertical-align:top}
        tr.differs td{background:#fde8e8;font-weight:bold}tr.differs td:first-child::before{content:"\\2260  "}
        #msg.err{color:#c22;font-weight:bold}#msg.ok{color:#282}.note{color:#666}fieldset{border:1px solid #ccc;margin:.5em 0}
        button{margin:0 .3em}#detail{border-top:2px solid #888;margin-top:1em}
        """

    static let script = """
        (function () {
          "use strict";
          var KEY = "cdcr-admin-token";
          function $(id) { return document.getElementById(id); }
          function token() { return sessionStorage.getItem(KEY) || ""; }
          function el(tag, text, cls) {
            var e = document.createElement(tag);
            if (text !== undefined && text !== null) e.textContent = String(text);
            if (cls) e.className = cls;
            return e;
          }
          function say(text, bad) { var m = $("msg"); m.textContent = text; m.className = bad ? "err" : "ok"; }
          function call(method, path, body) {
            var headers = {};
            if (token()) headers["Authorization"] = "Bearer " + token();
            if (body !== undefined) headers["Content-Type"] = "application/json";
            return fetch(path, { method: method, headers: headers, credentials: "omit", cache: "no-store",
                                 body: body === undefined ? undefined : JSON.stringify(body) })
              .then(function (r) {
                return r.json().catch(function () { return null; }).then(function (data) {
                  if (!r.ok) throw new Error((data && data.error) || ("HTTP " + r.status));
                  return data;
                });
              });
          }
          function load() {
            var q = new URLSearchParams();
            if ($("f-table").value) q.set("table", $("f-table").value.trim());
            if ($("f-kind").value) q.set("kind", $("f-kind").value);
            q.set("status", $("f-status").value);
            return call("GET", "/review?" + q.toString()).then(function (data) { render(data.items); })
              .catch(function (e) { say(e.message, true); });
          }
          function render(items) {
            var body = $("items");
            body.replaceChildren();
            items.forEach(function (it) {
              var tr = el("tr");
              tr.id = "item-" + it.id;
              [it.id, it.table, it.kind, it.key_text, it.columns.join(", "), it.status, it.times_seen, it.last_seen_at]
                .forEach(function (v) { tr.appendChild(el("td", v)); });
              var td = el("td"), b = el("button", "show", "show");
              b.id = "show-" + it.id;
              b.addEventListener("click", function () { show(it.id); });
              td.appendChild(b);
              tr.appendChild(td);
              body.appendChild(tr);
            });
            $("count").textContent = items.length + " item(s)";
          }
          function cell(exists, v) { return exists === false ? "(no row)" : (v === null ? "NULL" : v); }
          // The item last asked for: an answer for an earlier one (a reload still in flight) is dropped.
          var wanted = null;
          function show(id) {
            wanted = String(id);
            return call("GET", "/review/" + encodeURIComponent(id)).then(function (d) {
              if (String(d.item.id) !== wanted) return;
              var box = $("detail"), it = d.item;
              box.hidden = false;
              box.dataset.id = it.id;
              $("d-title").textContent = "Item " + it.id + ": " + it.table + " " + it.kind + " " + it.key_text;
              $("d-state").textContent = "status " + it.status + (it.decided_by ? " by " + it.decided_by : "") +
                (it.reason ? " (" + it.reason + ")" : "") + "; values " + d.values + (d.currently ? ", currently " + d.currently : "");
              var t = $("diff");
              t.replaceChildren();
              var h = el("tr");
              ["column", "source", "target"].forEach(function (x) { h.appendChild(el("th", x)); });
              t.appendChild(h);
              d.cells.forEach(function (c) {
                var tr = el("tr", null, c.differs ? "differs" : "");
                tr.appendChild(el("td", c.column + (c.key ? " (key)" : "")));
                tr.appendChild(el("td", cell(d.source_row, c.source)));
                tr.appendChild(el("td", cell(d.target_row, c.target)));
                t.appendChild(tr);
              });
              var notes = $("d-notes");
              notes.replaceChildren();
              d.notes.forEach(function (n) { notes.appendChild(el("p", n, "note")); });
              $("actions").hidden = !(it.status === "open" || it.status === "queued");
            }).catch(function (e) { say(e.message, true); });
          }
          function decide(verb) {
            var id = $("detail").dataset.id, by = $("by").value.trim(), body = { by: by };
            if (!by) { say("enter your name: who decides is recorded", true); return; }
            if (verb === "reject") {
              body.reason = $("reason").value.trim();
              if (!body.reason) { say("a rejection needs a reason", true); return; }
            }
            call("POST", "/review/" + encodeURIComponent(id) + "/" + verb, body).then(function (it) {
              say("item " + it.id + " is now " + it.status + " (by " + it.decided_by + ")");
              return load().then(function () { if (wanted === String(id)) return show(id); });
            }).catch(function (e) { say(e.message, true); });
          }
          function applyAll() {
            call("POST", "/review/apply", { allow_delete: $("allow-delete").checked }).then(function (r) {
              say("repair run " + r.run_id + ": " + r.applied + " applied, " + r.pending + " still pending");
              return load();
            }).catch(function (e) { say(e.message, true); });
          }
          $("token").value = token();
          $("save-token").addEventListener("click", function () {
            sessionStorage.setItem(KEY, $("token").value);
            say("token kept for this tab only");
            load();
          });
          $("filters").addEventListener("submit", function (e) { e.preventDefault(); load(); });
          $("approve").addEventListener("click", function () { decide("approve"); });
          $("reject").addEventListener("click", function () { decide("reject"); });
          $("apply").addEventListener("click", applyAll);
          load();
        })();
        """

    static let html: String = {
        let kinds = DiscrepancyKind.allCases.map { "<option>\($0.rawValue)</option>" }.joined()
        let statuses = (["open,queued"] + Resolution.allCases.map(\.rawValue) + ["all"]).map { "<option>\($0)</option>" }.joined()
        return """
            <!doctype html><html lang=en><head><meta charset=utf-8><title>cdcr review queue</title><style>\(style)</style></head><body>
            <h1>cdcr review queue</h1><p><a href="/">status</a></p>
            <fieldset><legend>admin token</legend><input id=token type=password autocomplete=off size=40 placeholder="admin.token (empty when none is set)">
            <button id=save-token type=button>use token</button> who decides: <input id=by size=16 autocomplete=off></fieldset>
            <form id=filters>table <input id=f-table size=24 placeholder="schema.table"> kind <select id=f-kind><option value="">any</option>\(kinds)</select>
            status <select id=f-status>\(statuses)</select> <button type=submit id=filter>filter</button>
            <button type=button id=apply>apply approved</button> <label><input type=checkbox id=allow-delete> allow deleting extra rows</label></form>
            <p id=msg></p><p id=count></p>
            <table><thead><tr><th>id</th><th>table</th><th>kind</th><th>key</th><th>columns</th><th>status</th><th>seen</th><th>last seen</th><th></th></tr></thead>
            <tbody id=items></tbody></table>
            <section id=detail hidden><h2 id=d-title></h2><p id=d-state></p><table id=diff></table><div id=d-notes></div>
            <div id=actions><button id=approve type=button>approve (repair the target)</button>
            reason <input id=reason size=40 autocomplete=off> <button id=reject type=button>reject (keep the target)</button></div></section>
            <script>\(script)</script></body></html>
            """
    }()

    /// `'sha256-…'` of an inline element's text, as a CSP source.
    static func cspHash(_ text: String) -> String {
        "'sha256-" + Data(SHA256.digest(Array(text.utf8))).base64EncodedString() + "'"
    }

    static let policy = "default-src 'none'; script-src \(cspHash(script)); style-src \(cspHash(style)); connect-src 'self'; "
        + "img-src 'none'; form-action 'none'; base-uri 'none'; frame-ancestors 'none'"

    static func response() -> Response {
        Response(status: .ok, headers: [
            .contentType: "text/html; charset=utf-8", .contentSecurityPolicy: policy, .cacheControl: "no-store",
            .init("X-Content-Type-Options")!: "nosniff", .init("Referrer-Policy")!: "no-referrer",
        ], body: .init(byteBuffer: ByteBuffer(string: html)))
    }
}
