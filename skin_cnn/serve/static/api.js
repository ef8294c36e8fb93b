// Offline rendering of the OpenAPI document: one card per endpoint.
"use strict";

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

async function render() {
  const root = document.getElementById("api");
  const spec = await (await fetch("/openapi.json")).json();
  for (const [path, methods] of Object.entries(spec.paths)) {
    for (const [method, op] of Object.entries(methods)) {
      const card = el("section", "endpoint");
      card.appendChild(el("h2", "", `${method.toUpperCase()} ${path}`));
      if (op.summary) card.appendChild(el("p", "summary", op.summary));
      if (op.description) card.appendChild(el("p", "", op.description.replace(/`/g, "")));
      const params = op.parameters || [];
      if (params.length) {
        const list = el("ul");
        for (const p of params) {
          const schema = p.schema || {};
          const dflt = schema.default !== undefined ? ` (default ${JSON.stringify(schema.default)})` : "";
          list.appendChild(el("li", "", `${p.name} — ${p.in}, ${schema.type || "value"}${dflt}: ${p.description || ""}`));
        }
        card.appendChild(list);
      }
      const body = op.requestBody && op.requestBody.content;
      if (body) {
        const list = el("ul");
        for (const [type, content] of Object.entries(body)) {
          const props = (content.schema && content.schema.properties) || {};
          const fields = Object.entries(props).map(([k, v]) => `${k}: ${v.description || v.type}`).join("; ");
          list.appendChild(el("li", "", `body ${type}${fields ? " — " + fields : ""}`));
        }
        card.appendChild(list);
      }
      root.appendChild(card);
    }
  }
}

document.addEventListener("DOMContentLoaded", render);
