#!/usr/bin/env -S node --no-warnings
// Runs a wasm32-wasip1 bench binary under Node's WASI (V8, the engine Envoy embeds), like
// tools/wasi-run.mjs, but links the proxy-wasm imports (`env.proxy_*`) a binary built with the
// filter's crate declares: each answers 12 (Unimplemented). The bench never calls them: the
// filter's request path runs against an in-memory host (bench/src/filter.rs).
// Usage: node bench/wasi-run.mjs target/wasm32-wasip1/release/wasm-timing.wasm [filter]
import { readFile } from "node:fs/promises";
import { WASI } from "node:wasi";
import process from "node:process";

const [wasmPath, ...args] = process.argv.slice(2);
const wasi = new WASI({ version: "preview1", args: [wasmPath, ...args], env: process.env, returnOnExit: true });
const module = await WebAssembly.compile(await readFile(wasmPath));
const imports = wasi.getImportObject();
imports.env = {};
for (const i of WebAssembly.Module.imports(module)) {
  if (i.module === "env" && i.kind === "function") imports.env[i.name] = () => 12;
}
const instance = await WebAssembly.instantiate(module, imports);
// The filter's crate exports the proxy-wasm reactor's `_initialize` too; run the command's `_start`.
const { memory, _start } = instance.exports;
process.exitCode = wasi.start({ exports: { memory, _start } });
