#!/usr/bin/env -S node --no-warnings
// Cargo runner for wasm32-wasip1 test binaries: runs them under Node's WASI (V8, the engine
// Envoy embeds), so `cargo test --target wasm32-wasip1` tests the code Envoy runs.
import { readFile } from "node:fs/promises";
import { WASI } from "node:wasi";
import process from "node:process";

const [wasmPath, ...args] = process.argv.slice(2);
const wasi = new WASI({ version: "preview1", args: [wasmPath, ...args], env: process.env, returnOnExit: true });
const module = await WebAssembly.compile(await readFile(wasmPath));
const instance = await WebAssembly.instantiate(module, wasi.getImportObject());
process.exitCode = wasi.start(instance);
