"""Files of known types, generated offline and seeded, for the file-type classifier entry.

Each generator takes a numpy Generator and returns the bytes of one file of its
type (the name is the classifier's label). Text types come from small templates
with random identifiers, numbers and sentences; binary types from Python's own
writers (zipfile, tarfile, gzip, bz2, lzma, zlib, sqlite3, wave, pickle,
marshal), numpy, and Pillow's encoders on random crops of the two sample photos
that scikit-learn ships. Timestamps are fixed so the bytes depend only on the
seed and the library versions.

`magika_features` turns a file's bytes into the classifier's input, following
the features-v2 description in the magika package (first/last block, whitespace
stripped, fixed-size head and tail, padded).
"""

from __future__ import annotations

import bz2
import csv
import difflib
import gzip
import importlib.util
import io
import json
import lzma
import marshal
import os
import pickle
import sqlite3
import struct
import tarfile
import tempfile
import wave
import zipfile
import zlib
from pathlib import Path
from typing import Callable

import numpy as np

EVAL_PER_TYPE = 8
CALIB_PER_TYPE = 6

WORDS = ("user data value count index buffer config result item node path name size total cache event request "
         "response token matrix record state queue handler parser order price account session file stream "
         "message image report client server table column limit offset score weight label batch").split()
PROSE = ("the quick analysis of every sample shows that results improve when the system is tuned carefully "
         "and tested against real workloads over several weeks while the team reviews each change before it "
         "is merged into the main branch so that nothing breaks for the people who depend on it daily").split()
FIRST = "Alice Bob Carol David Emma Frank Grace Henry Irene Jack Karen Liam Maria Noah Olga Peter".split()
LAST = "Smith Jones Brown Garcia Miller Davis Wilson Moore Taylor Clark Lewis Walker Hall Young".split()
CITIES = "London Paris Berlin Madrid Rome Vienna Prague Lisbon Dublin Oslo Tokyo Boston Denver Austin".split()


class _R:
    """Small helpers over a numpy Generator."""

    def __init__(self, rng: np.random.Generator):
        self.g = rng

    def i(self, lo: int, hi: int) -> int:
        return int(self.g.integers(lo, hi + 1))

    def pick(self, xs):
        return xs[int(self.g.integers(0, len(xs)))]

    def f(self, lo: float, hi: float, nd: int = 2) -> float:
        return round(float(self.g.uniform(lo, hi)), nd)

    def ident(self, style: str = "snake", n: int = 2) -> str:
        ws = [self.pick(WORDS) for _ in range(self.i(1, n))]
        if style == "camel":
            return ws[0] + "".join(w.title() for w in ws[1:])
        if style == "pascal":
            return "".join(w.title() for w in ws)
        return "_".join(ws)

    def sentence(self, lo: int = 6, hi: int = 16) -> str:
        ws = [self.pick(PROSE) for _ in range(self.i(lo, hi))]
        return " ".join(ws).capitalize() + "."

    def para(self, lo: int = 2, hi: int = 5) -> str:
        return " ".join(self.sentence() for _ in range(self.i(lo, hi)))

    def person(self) -> str:
        return f"{self.pick(FIRST)} {self.pick(LAST)}"


# ----------------------------------------------------------------------------- source code

def gen_python(r: _R) -> bytes:
    out = ["#!/usr/bin/env python3", f'"""{r.sentence()}"""', "",
           "import os", "import sys", "from typing import Dict, List, Optional", ""]
    if r.i(0, 1):
        out += ["import json", "from dataclasses import dataclass", ""]
    for _ in range(r.i(2, 4)):
        cls = r.ident("pascal")
        out += ["", f"class {cls}:", f'    """{r.sentence()}"""', "",
                f"    def __init__(self, {r.ident()}: int = {r.i(0, 99)}) -> None:",
                "        self.items: List[str] = []", f"        self.{r.ident()} = {r.i(0, 999)}", ""]
        for _ in range(r.i(1, 3)):
            a, b = r.ident(), r.ident()
            out += [f"    def {r.ident()}(self, {a}: Optional[str] = None) -> Dict[str, int]:",
                    "        result = {}", f"        for {b} in self.items:",
                    f"            if {a} and {b}.startswith({a}):",
                    f"                result[{b}] = len({b}) * {r.i(2, 9)}", "        return result", ""]
    fn = r.ident()
    out += ["", f"def {fn}(argv: List[str]) -> int:", f"    path = os.path.join(argv[0], \"{r.ident()}.txt\")",
            "    with open(path, encoding=\"utf-8\") as fh:", "        lines = [l.strip() for l in fh if l.strip()]",
            "    print(f\"read {len(lines)} lines from {path}\")", "    return 0", "", "",
            "if __name__ == \"__main__\":", f"    sys.exit({fn}(sys.argv[1:]))", ""]
    return "\n".join(out).encode()


def gen_c(r: _R) -> bytes:
    out = [f"/* {r.sentence()} */", "#include <stdio.h>", "#include <stdlib.h>", "#include <string.h>", "",
           f"#define MAX_{r.pick(WORDS).upper()} {r.i(16, 4096)}", ""]
    st = r.ident()
    out += [f"typedef struct {st} {{", "    int id;", f"    char name[{r.i(8, 64)}];", "    double value;",
            f"    struct {st} *next;", f"}} {st}_t;", ""]
    for _ in range(r.i(2, 4)):
        fn = r.ident()
        out += [f"static int {fn}(const {st}_t *node, size_t len)", "{", "    int total = 0;",
                "    for (size_t i = 0; i < len; i++) {", f"        if (node[i].value > {r.f(0, 10)}) {{",
                "            total += node[i].id;", "        }", "    }", "    return total;", "}", ""]
    out += ["int main(int argc, char **argv)", "{", f"    {st}_t *list = malloc(sizeof({st}_t) * {r.i(2, 64)});",
            "    if (list == NULL) {", "        fprintf(stderr, \"out of memory\\n\");", "        return 1;", "    }",
            "    memset(list, 0, sizeof(*list));", "    printf(\"%d\\n\", argc);", "    free(list);", "    return 0;",
            "}", ""]
    return "\n".join(out).encode()


def gen_cpp(r: _R) -> bytes:
    cls = r.ident("pascal")
    out = ["#include <iostream>", "#include <vector>", "#include <string>", "#include <memory>", "",
           f"namespace {r.pick(WORDS)} {{", "", f"class {cls} {{", "public:",
           f"    explicit {cls}(std::size_t n) : data_(n, 0) {{}}", f"    virtual ~{cls}() = default;", ""]
    for _ in range(r.i(2, 4)):
        out += [f"    int {r.ident('camel')}(const std::string& key) const {{",
                "        int sum = 0;", "        for (const auto& v : data_) {", f"            sum += v * {r.i(2, 9)};",
                "        }", "        return sum + static_cast<int>(key.size());", "    }", ""]
    out += ["private:", "    std::vector<int> data_;", "};", "", "}  // namespace", "", "int main() {",
            f"    auto obj = std::make_unique<{r.pick(WORDS)}::{cls}>({r.i(1, 100)});",
            "    std::cout << \"done\" << std::endl;", "    return 0;", "}", ""]
    return "\n".join(out).encode()


def gen_java(r: _R) -> bytes:
    cls = r.ident("pascal")
    out = [f"package com.{r.pick(WORDS)}.{r.pick(WORDS)};", "", "import java.util.ArrayList;",
           "import java.util.List;", "import java.util.Map;", "", "/**", f" * {r.sentence()}", " */",
           f"public class {cls} {{", "", f"    private final List<String> {r.ident('camel')} = new ArrayList<>();",
           f"    private int {r.ident('camel')};", ""]
    for _ in range(r.i(2, 4)):
        out += ["    @Override" if r.i(0, 3) == 0 else "",
                f"    public int {r.ident('camel')}(Map<String, Integer> values) {{", "        int total = 0;",
                "        for (Map.Entry<String, Integer> e : values.entrySet()) {",
                f"            total += e.getValue() * {r.i(2, 9)};", "        }", "        return total;", "    }", ""]
    out += ["    public static void main(String[] args) {",
            f"        System.out.println(\"{r.sentence()}\");", "    }", "}", ""]
    return "\n".join(out).encode()


def gen_javascript(r: _R) -> bytes:
    out = ["'use strict';", "", f"const {r.ident('camel')} = require('{r.pick(WORDS)}');",
           "const path = require('path');", ""]
    for _ in range(r.i(2, 4)):
        fn = r.ident("camel")
        out += [f"function {fn}(items, options = {{}}) {{", "  const result = [];",
                "  for (const item of items) {", f"    if (item.{r.ident('camel')} > {r.i(0, 100)}) {{",
                f"      result.push({{ ...item, {r.ident('camel')}: true }});", "    }", "  }",
                "  return result;", "}", "",
                f"const {r.ident('camel')} = async (url) => {{", "  const res = await fetch(url);",
                "  return res.json();", "};", ""]
    out += [f"module.exports = {{ {r.ident('camel')}, {r.ident('camel')} }};", ""]
    return "\n".join(out).encode()


def gen_typescript(r: _R) -> bytes:
    it = r.ident("pascal")
    out = [f"import {{ {r.ident('pascal')} }} from './{r.pick(WORDS)}';", "", f"export interface {it} {{",
           "  id: number;", "  name: string;", f"  {r.ident('camel')}?: boolean;", "}", ""]
    for _ in range(r.i(2, 4)):
        out += [f"export function {r.ident('camel')}(items: {it}[], limit: number = {r.i(1, 50)}): {it}[] {{",
                "  return items.filter((x: " + it + ") => x.id < limit).map((x) => ({ ...x }));", "}", "",
                f"export const {r.ident('camel')} = (value: string): number => value.length * {r.i(2, 9)};", ""]
    out += [f"export type {r.ident('pascal')} = Record<string, {it}>;", ""]
    return "\n".join(out).encode()


def gen_go(r: _R) -> bytes:
    st = r.ident("pascal")
    out = ["package main", "", "import (", "\t\"fmt\"", "\t\"os\"", "\t\"strings\"", ")", "",
           f"type {st} struct {{", "\tID    int", "\tName  string", "\tValue float64", "}", ""]
    for _ in range(r.i(2, 4)):
        out += [f"func {r.ident('camel')}(items []{st}, prefix string) ([]string, error) {{",
                "\tvar out []string", "\tfor _, it := range items {", "\t\tif strings.HasPrefix(it.Name, prefix) {",
                "\t\t\tout = append(out, it.Name)", "\t\t}", "\t}", "\tif len(out) == 0 {",
                f"\t\treturn nil, fmt.Errorf(\"no {r.pick(WORDS)} found\")", "\t}", "\treturn out, nil", "}", ""]
    out += ["func main() {", "\tif len(os.Args) < 2 {", "\t\tfmt.Println(\"usage\")", "\t\tos.Exit(1)", "\t}",
            "\tfmt.Println(os.Args[1])", "}", ""]
    return "\n".join(out).encode()


def gen_rust(r: _R) -> bytes:
    st = r.ident("pascal")
    out = ["use std::collections::HashMap;", "use std::fmt;", "", "#[derive(Debug, Clone)]",
           f"pub struct {st} {{", "    id: u32,", "    name: String,", "    values: Vec<f64>,", "}", "",
           f"impl {st} {{", "    pub fn new(id: u32) -> Self {", f"        {st} {{ id, name: String::new(), values: Vec::new() }}",
           "    }", ""]
    for _ in range(r.i(2, 4)):
        out += [f"    pub fn {r.ident()}(&mut self, map: &HashMap<String, f64>) -> Option<f64> {{",
                "        let mut total = 0.0;", "        for (_, v) in map.iter() {",
                f"            total += v * {r.f(0, 5)};", "        }", "        self.values.push(total);",
                "        Some(total)", "    }", ""]
    out += ["}", "", "fn main() {", f"    let mut x = {st}::new({r.i(1, 99)});",
            "    println!(\"{:?}\", x);", "}", ""]
    return "\n".join(out).encode()


def gen_shell(r: _R) -> bytes:
    out = ["#!/bin/bash", "set -euo pipefail", "", f"{r.ident().upper()}=\"/var/lib/{r.pick(WORDS)}\"",
           f"LOG_FILE=\"/tmp/{r.ident()}.log\"", ""]
    for _ in range(r.i(2, 4)):
        fn = r.ident()
        out += [f"{fn}() {{", "    local target=\"$1\"", "    if [ ! -d \"$target\" ]; then",
                "        mkdir -p \"$target\"", "    fi", "    echo \"processing $target\" >> \"$LOG_FILE\"",
                "}", ""]
    out += ["for f in \"$@\"; do", "    if [[ -f \"$f\" ]]; then", "        grep -c \"" + r.pick(WORDS) + "\" \"$f\" || true",
            "    fi", "done", "", "exit 0", ""]
    return "\n".join(out).encode()


def gen_php(r: _R) -> bytes:
    cls = r.ident("pascal")
    out = ["<?php", "", f"namespace App\\{r.ident('pascal')};", "", f"use App\\Models\\{r.ident('pascal')};", "",
           f"class {cls}", "{", f"    private ${r.ident('camel')} = [];", ""]
    for _ in range(r.i(2, 4)):
        out += [f"    public function {r.ident('camel')}($request)", "    {",
                f"        $items = $this->{r.ident('camel')}->where('id', '>', {r.i(0, 99)})->get();",
                "        foreach ($items as $item) {", "            echo $item->name . \"\\n\";", "        }",
                "        return $items;", "    }", ""]
    out += ["}", ""]
    return "\n".join(out).encode()


def gen_ruby(r: _R) -> bytes:
    out = ["# frozen_string_literal: true", "", f"require '{r.pick(WORDS)}'", "", f"module {r.ident('pascal')}",
           f"  class {r.ident('pascal')}", f"    attr_reader :{r.ident()}, :{r.ident()}", ""]
    for _ in range(r.i(2, 4)):
        out += [f"    def {r.ident()}(items, limit = {r.i(1, 50)})", "      items.select { |x| x.size < limit }.map do |x|",
                f"        x.to_s + '{r.pick(WORDS)}'", "      end", "    end", ""]
    out += ["  end", "end", ""]
    return "\n".join(out).encode()


# ----------------------------------------------------------------------------- data and markup

def _records(r: _R, n: int) -> list[dict]:
    return [{"id": r.i(1, 99999), "name": r.person(), "city": r.pick(CITIES), "score": r.f(0, 100),
             "active": bool(r.i(0, 1)), "tags": [r.pick(WORDS) for _ in range(r.i(0, 3))]} for _ in range(n)]


def gen_json(r: _R) -> bytes:
    doc = {"version": f"{r.i(0, 5)}.{r.i(0, 20)}.{r.i(0, 9)}", r.ident(): _records(r, r.i(3, 15)),
           "meta": {r.ident(): r.i(0, 1000) for _ in range(r.i(2, 5))}}
    return json.dumps(doc, indent=r.pick([2, 4])).encode()


def gen_jsonl(r: _R) -> bytes:
    return "".join(json.dumps(x) + "\n" for x in _records(r, r.i(8, 40))).encode()


def _table(r: _R, delim: str) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf, delimiter=delim, lineterminator="\n")
    w.writerow(["id", "name", "city", "score", "date", "amount"])
    for _ in range(r.i(10, 60)):
        w.writerow([r.i(1, 9999), r.person(), r.pick(CITIES), r.f(0, 100),
                    f"20{r.i(10, 24)}-{r.i(1, 12):02d}-{r.i(1, 28):02d}", r.f(-500, 5000)])
    return buf.getvalue().encode()


def gen_csv(r: _R) -> bytes:
    return _table(r, ",")


def gen_tsv(r: _R) -> bytes:
    return _table(r, "\t")


def gen_html(r: _R) -> bytes:
    title = r.sentence(2, 5)[:-1]
    body = "\n".join(f"    <h2>{r.sentence(2, 5)[:-1]}</h2>\n    <p>{r.para()}</p>\n"
                     f"    <a href=\"/{r.pick(WORDS)}/{r.i(1, 99)}.html\">{r.pick(WORDS)}</a>" for _ in range(r.i(2, 5)))
    return (f"<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n  <meta charset=\"utf-8\">\n  <title>{title}</title>\n"
            f"  <link rel=\"stylesheet\" href=\"style.css\">\n</head>\n<body>\n  <div class=\"{r.pick(WORDS)}\">\n"
            f"{body}\n  </div>\n  <script src=\"app.js\"></script>\n</body>\n</html>\n").encode()


def gen_xml(r: _R) -> bytes:
    root = r.ident()
    items = "\n".join(f"  <{r.pick(WORDS)} id=\"{r.i(1, 999)}\" type=\"{r.pick(WORDS)}\">\n"
                      f"    <name>{r.person()}</name>\n    <city>{r.pick(CITIES)}</city>\n"
                      f"    <value>{r.f(0, 100)}</value>\n  </{r.pick(WORDS)}>" for _ in range(r.i(3, 15)))
    return f"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<{root}>\n{items}\n</{root}>\n".encode()


def gen_svg(r: _R) -> bytes:
    w, h = r.i(100, 800), r.i(100, 600)
    shapes = []
    for _ in range(r.i(3, 20)):
        color = f"#{r.i(0, 0xFFFFFF):06x}"
        if r.i(0, 1):
            shapes.append(f"  <circle cx=\"{r.i(0, w)}\" cy=\"{r.i(0, h)}\" r=\"{r.i(2, 60)}\" fill=\"{color}\"/>")
        else:
            shapes.append(f"  <rect x=\"{r.i(0, w)}\" y=\"{r.i(0, h)}\" width=\"{r.i(5, 200)}\" height=\"{r.i(5, 200)}\" "
                          f"stroke=\"{color}\" fill=\"none\"/>")
    return (f"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\">\n"
            + "\n".join(shapes) + "\n</svg>\n").encode()


def gen_yaml(r: _R) -> bytes:
    out = [f"# {r.sentence()}", f"version: \"{r.i(1, 3)}.{r.i(0, 9)}\"", f"{r.ident()}:"]
    for _ in range(r.i(2, 6)):
        out += [f"  {r.ident()}:", f"    image: {r.pick(WORDS)}:{r.i(1, 20)}.{r.i(0, 9)}",
                f"    replicas: {r.i(1, 8)}", f"    enabled: {r.pick(['true', 'false'])}", "    ports:",
                f"      - \"{r.i(1000, 9999)}:{r.i(80, 8080)}\"", "    environment:",
                f"      - {r.ident().upper()}={r.pick(WORDS)}"]
    return ("\n".join(out) + "\n").encode()


def gen_toml(r: _R) -> bytes:
    out = ["[package]", f"name = \"{r.ident().replace('_', '-')}\"", f"version = \"{r.i(0, 3)}.{r.i(0, 20)}.{r.i(0, 9)}\"",
           f"authors = [\"{r.person()} <{r.pick(FIRST).lower()}@example.com>\"]", "edition = \"2021\"", "",
           "[dependencies]"]
    out += [f"{r.pick(WORDS)} = \"{r.i(0, 3)}.{r.i(0, 20)}\"" for _ in range(r.i(2, 8))]
    for _ in range(r.i(1, 3)):
        out += ["", f"[{r.ident()}]", f"enabled = {r.pick(['true', 'false'])}", f"limit = {r.i(1, 1000)}",
                f"ratio = {r.f(0, 1)}"]
    return ("\n".join(out) + "\n").encode()


def gen_ini(r: _R) -> bytes:
    out = []
    for _ in range(r.i(2, 5)):
        out += [f"[{r.ident()}]", f"{r.ident()}={r.pick(WORDS)}", f"{r.ident()} = {r.i(0, 9999)}",
                f"path=C:\\Program Files\\{r.pick(WORDS).title()}\\{r.pick(WORDS)}.dll",
                f"enabled={r.pick(['yes', 'no', '1', '0'])}", ""]
    return ("\n".join(out)).encode()


def gen_markdown(r: _R) -> bytes:
    out = [f"# {r.sentence(2, 5)[:-1]}", "", r.para(), ""]
    for _ in range(r.i(2, 4)):
        out += [f"## {r.sentence(1, 4)[:-1]}", "", r.para(1, 3), ""]
        out += [f"- **{r.pick(WORDS)}**: {r.sentence(3, 8)}" for _ in range(r.i(2, 4))] + [""]
        if r.i(0, 1):
            out += ["```bash", f"pip install {r.pick(WORDS)}", "```", ""]
        out += [f"See [{r.pick(WORDS)}](https://example.com/{r.pick(WORDS)}) for details.", ""]
    return "\n".join(out).encode()


def gen_latex(r: _R) -> bytes:
    out = [r"\documentclass[11pt]{article}", r"\usepackage{amsmath}", r"\usepackage{graphicx}", "",
           rf"\title{{{r.sentence(2, 6)[:-1]}}}", rf"\author{{{r.person()}}}", "", r"\begin{document}", r"\maketitle", ""]
    for _ in range(r.i(2, 4)):
        out += [rf"\section{{{r.sentence(1, 4)[:-1]}}}", r.para(), "", r"\begin{equation}",
                rf"  f(x) = \sum_{{i=1}}^{{{r.i(2, 99)}}} \frac{{x^i}}{{{r.i(2, 9)}}}", r"\end{equation}", ""]
    out += [r"\end{document}", ""]
    return "\n".join(out).encode()


def gen_sql(r: _R) -> bytes:
    t = r.ident()
    out = [f"-- {r.sentence()}", f"CREATE TABLE {t} (", "    id INTEGER PRIMARY KEY,", "    name VARCHAR(100) NOT NULL,",
           "    city VARCHAR(50),", "    score DECIMAL(5, 2),", "    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP", ");", ""]
    for _ in range(r.i(3, 12)):
        out.append(f"INSERT INTO {t} (id, name, city, score) VALUES ({r.i(1, 9999)}, '{r.person()}', "
                   f"'{r.pick(CITIES)}', {r.f(0, 100)});")
    out += ["", f"SELECT city, COUNT(*) AS n, AVG(score) FROM {t}", f"WHERE score > {r.i(0, 90)}",
            "GROUP BY city", "ORDER BY n DESC;", ""]
    return "\n".join(out).encode()


def gen_css(r: _R) -> bytes:
    out = []
    for _ in range(r.i(4, 12)):
        sel = r.pick([f".{r.pick(WORDS)}", f"#{r.pick(WORDS)}", f"div.{r.pick(WORDS)} > p", "body", "a:hover"])
        out += [f"{sel} {{", f"  margin: {r.i(0, 40)}px {r.i(0, 40)}px;", f"  color: #{r.i(0, 0xFFFFFF):06x};",
                f"  font-size: {r.f(0.6, 2.5, 1)}rem;", f"  display: {r.pick(['flex', 'block', 'none', 'grid'])};",
                "}", ""]
    return "\n".join(out).encode()


def gen_makefile(r: _R) -> bytes:
    prog = r.pick(WORDS)
    objs = " ".join(f"{r.pick(WORDS)}.o" for _ in range(r.i(2, 6)))
    out = ["CC = gcc", f"CFLAGS = -O{r.i(0, 3)} -Wall -Wextra -g", "LDFLAGS = -lm", f"OBJS = {objs}", "",
           ".PHONY: all clean install", "", f"all: {prog}", "", f"{prog}: $(OBJS)", "\t$(CC) $(CFLAGS) -o $@ $^ $(LDFLAGS)",
           "", "%.o: %.c", "\t$(CC) $(CFLAGS) -c $< -o $@", "", "install: all", f"\tinstall -m 755 {prog} /usr/local/bin/",
           "", "clean:", f"\trm -f $(OBJS) {prog}", ""]
    return "\n".join(out).encode()


def gen_dockerfile(r: _R) -> bytes:
    base = r.pick(["python:3.11-slim", "ubuntu:22.04", "node:20-alpine", "debian:bookworm", "golang:1.22"])
    out = [f"FROM {base}", "", f"LABEL maintainer=\"{r.pick(FIRST).lower()}@example.com\"", "WORKDIR /app", "",
           "RUN apt-get update && apt-get install -y --no-install-recommends \\",
           f"    {r.pick(['curl', 'git', 'build-essential', 'ca-certificates'])} \\", "    && rm -rf /var/lib/apt/lists/*", "",
           "COPY requirements.txt .", "RUN pip install --no-cache-dir -r requirements.txt", "COPY . .", "",
           f"ENV {r.ident().upper()}={r.pick(WORDS)}", f"EXPOSE {r.i(1000, 9999)}",
           f"CMD [\"python\", \"{r.pick(WORDS)}.py\"]", ""]
    return "\n".join(out).encode()


def gen_diff(r: _R) -> bytes:
    a = gen_python(r).decode().splitlines(keepends=True)
    b = list(a)
    for _ in range(r.i(1, 4)):
        k = r.i(0, len(b) - 1)
        b[k] = f"    {r.ident()} = {r.i(0, 999)}  # {r.sentence(2, 6)}\n"
    name = f"src/{r.ident()}.py"
    return "".join(difflib.unified_diff(a, b, f"a/{name}", f"b/{name}")).encode() or b"--- a\n+++ b\n"


def gen_txt(r: _R) -> bytes:
    return ("\n\n".join(r.para(3, 7) for _ in range(r.i(2, 6))) + "\n").encode()


def gen_rtf(r: _R) -> bytes:
    paras = "\n".join(rf"\pard\sa200\sl276\slmult1\f0\fs{r.pick([20, 22, 24])} {r.para()}\par" for _ in range(r.i(2, 5)))
    return (r"{\rtf1\ansi\ansicpg1252\deff0\nouicompat\deflang1033{\fonttbl{\f0\fnil\fcharset0 Calibri;}}" + "\n"
            + r"{\*\generator Riched20 10.0.19041}\viewkind4\uc1" + "\n" + paras + "\n}\n").encode()


# ----------------------------------------------------------------------------- archives and binaries

_FIXED_DATE = (2020, 1, 1, 0, 0, 0)


def _zip(entries: list[tuple[str, bytes]], stored_first: bool = False) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for k, (name, data) in enumerate(entries):
            info = zipfile.ZipInfo(name, date_time=_FIXED_DATE)
            info.compress_type = zipfile.ZIP_STORED if (stored_first and k == 0) else zipfile.ZIP_DEFLATED
            zf.writestr(info, data)
    return buf.getvalue()


def _some_text(r: _R) -> bytes:
    return r.pick([gen_txt, gen_csv, gen_json, gen_python, gen_html])(r)


def gen_zip(r: _R) -> bytes:
    return _zip([(f"{r.pick(WORDS)}/{r.ident()}{k}.{r.pick(['txt', 'csv', 'json', 'py', 'html'])}", _some_text(r))
                 for k in range(r.i(1, 5))])


def gen_jar(r: _R) -> bytes:
    pkg = f"com/{r.pick(WORDS)}/{r.pick(WORDS)}"
    cls = [(f"{pkg}/{r.ident('pascal')}{k}.class", b"\xca\xfe\xba\xbe\x00\x00\x00\x34" + r.g.bytes(r.i(300, 3000)))
           for k in range(r.i(2, 6))]
    manifest = f"Manifest-Version: 1.0\r\nCreated-By: 17.0.2 (Oracle Corporation)\r\nMain-Class: {pkg.replace('/', '.')}.Main\r\n\r\n"
    return _zip([("META-INF/MANIFEST.MF", manifest.encode())] + cls)


_CT = ('<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<Types xmlns="http://schemas.openxmlformats.org/'
       'package/2006/content-types"><Default Extension="rels" ContentType="application/vnd.openxmlformats-package.'
       'relationships+xml"/><Default Extension="xml" ContentType="application/xml"/>{}</Types>')


def gen_docx(r: _R) -> bytes:
    body = "".join(f"<w:p><w:r><w:t>{r.para(1, 3)}</w:t></w:r></w:p>" for _ in range(r.i(2, 8)))
    doc = ('<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<w:document xmlns:w="http://schemas.openxmlformats.'
           f'org/wordprocessingml/2006/main"><w:body>{body}</w:body></w:document>')
    ov = ('<Override PartName="/word/document.xml" ContentType="application/vnd.openxmlformats-officedocument.'
          'wordprocessingml.document.main+xml"/>')
    rels = ('<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<Relationships xmlns="http://schemas.openxmlformats.'
            'org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/'
            'officeDocument/2006/relationships/officeDocument" Target="word/document.xml"/></Relationships>')
    return _zip([("[Content_Types].xml", _CT.format(ov).encode()), ("_rels/.rels", rels.encode()),
                 ("word/document.xml", doc.encode())])


def gen_xlsx(r: _R) -> bytes:
    rows = "".join(f'<row r="{i + 1}">' + "".join(f'<c r="{chr(65 + j)}{i + 1}"><v>{r.f(0, 1000)}</v></c>' for j in range(5))
                   + "</row>" for i in range(r.i(5, 40)))
    sheet = ('<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<worksheet xmlns="http://schemas.openxmlformats.'
             f'org/spreadsheetml/2006/main"><sheetData>{rows}</sheetData></worksheet>')
    wb = ('<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<workbook xmlns="http://schemas.openxmlformats.org/'
          'spreadsheetml/2006/main"><sheets><sheet name="Sheet1" sheetId="1"/></sheets></workbook>')
    ov = ('<Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.'
          'spreadsheetml.sheet.main+xml"/>')
    return _zip([("[Content_Types].xml", _CT.format(ov).encode()), ("xl/workbook.xml", wb.encode()),
                 ("xl/worksheets/sheet1.xml", sheet.encode())])


def gen_epub(r: _R) -> bytes:
    chapters = [(f"OEBPS/chapter{k}.xhtml", (f'<?xml version="1.0" encoding="utf-8"?>\n<html xmlns="http://www.w3.org/'
                 f'1999/xhtml"><head><title>{r.sentence(2, 4)}</title></head><body><p>{r.para()}</p></body></html>').encode())
                for k in range(r.i(1, 4))]
    container = ('<?xml version="1.0"?>\n<container version="1.0" xmlns="urn:oasis:names:tc:opendocument:xmlns:container">'
                 '<rootfiles><rootfile full-path="OEBPS/content.opf" media-type="application/oebps-package+xml"/>'
                 '</rootfiles></container>')
    opf = (f'<?xml version="1.0"?>\n<package xmlns="http://www.idpf.org/2007/opf" version="3.0"><metadata><dc:title '
           f'xmlns:dc="http://purl.org/dc/elements/1.1/">{r.sentence(2, 4)}</dc:title></metadata></package>')
    return _zip([("mimetype", b"application/epub+zip"), ("META-INF/container.xml", container.encode()),
                 ("OEBPS/content.opf", opf.encode())] + chapters, stored_first=True)


def gen_tar(r: _R) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tf:
        for k in range(r.i(1, 4)):
            data = _some_text(r)
            info = tarfile.TarInfo(f"{r.pick(WORDS)}/{r.ident()}{k}.txt")
            info.size, info.mtime, info.mode, info.uname, info.gname = len(data), 1577836800, 0o644, "user", "user"
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def gen_gzip(r: _R) -> bytes:
    return gzip.compress(_some_text(r), mtime=0)


def gen_bzip(r: _R) -> bytes:
    return bz2.compress(_some_text(r))


def gen_xz(r: _R) -> bytes:
    return lzma.compress(_some_text(r))


def gen_zlibstream(r: _R) -> bytes:
    return zlib.compress(_some_text(r), r.i(1, 9))


def gen_sqlite(r: _R) -> bytes:
    with tempfile.TemporaryDirectory() as td:
        p = os.path.join(td, "db.sqlite")
        con = sqlite3.connect(p)
        t = r.ident()
        con.execute(f"CREATE TABLE {t} (id INTEGER PRIMARY KEY, name TEXT, city TEXT, score REAL)")
        con.executemany(f"INSERT INTO {t} VALUES (?, ?, ?, ?)",
                        [(k, r.person(), r.pick(CITIES), r.f(0, 100)) for k in range(r.i(5, 200))])
        con.commit()
        con.close()
        return Path(p).read_bytes()


def gen_wav(r: _R) -> bytes:
    rate = r.pick([8000, 16000, 22050, 44100])
    n = r.i(2000, 20000)
    t = np.arange(n) / rate
    sig = sum(np.sin(2 * np.pi * r.f(100, 2000) * t) * r.f(0.1, 0.4) for _ in range(r.i(1, 3)))
    pcm = (np.clip(sig, -1, 1) * 32000).astype("<i2")
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())
    return buf.getvalue()


def gen_npy(r: _R) -> bytes:
    buf = io.BytesIO()
    shape = tuple(r.i(2, 40) for _ in range(r.i(1, 3)))
    np.save(buf, r.g.normal(0, 1, shape).astype(r.pick(["<f4", "<f8", "<i4"])))
    return buf.getvalue()


def gen_npz(r: _R) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for k in range(r.i(1, 4)):
            info = zipfile.ZipInfo(f"{r.ident()}{k}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            with zf.open(info, "w") as fh:
                np.lib.format.write_array(fh, r.g.normal(0, 1, (r.i(2, 30), r.i(2, 30))).astype("<f4"))
    return buf.getvalue()


def gen_pickle(r: _R) -> bytes:
    return pickle.dumps({"records": _records(r, r.i(3, 20)), r.ident(): tuple(r.i(0, 99) for _ in range(5))},
                        protocol=r.pick([2, 4, 5]))


def gen_pythonbytecode(r: _R) -> bytes:
    code = compile(gen_python(r).decode(), f"{r.ident()}.py", "exec")
    return importlib.util.MAGIC_NUMBER + struct.pack("<III", 0, 1577836800, r.i(500, 5000)) + marshal.dumps(code)


def gen_randombytes(r: _R) -> bytes:
    return r.g.bytes(r.i(1000, 8000))


# ----------------------------------------------------------------------------- images (Pillow)

_PHOTOS: dict[str, object] = {}


def _photo(r: _R):
    """A random crop of one of scikit-learn's two sample photos, resized, as a PIL image."""
    from PIL import Image
    import sklearn.datasets

    if not _PHOTOS:
        d = Path(sklearn.datasets.__file__).parent / "images"
        for name in ("china.jpg", "flower.jpg"):
            with Image.open(d / name) as im:
                _PHOTOS[name] = im.convert("RGB").copy()
    im = _PHOTOS[r.pick(sorted(_PHOTOS))]
    w, h = im.size
    cw, ch = r.i(64, w // 2), r.i(64, h // 2)
    x, y = r.i(0, w - cw), r.i(0, h - ch)
    out = im.crop((x, y, x + cw, y + ch))
    s = r.f(0.2, 1.0)
    return out.resize((max(16, int(cw * s)), max(16, int(ch * s))))


def _pil_bytes(im, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


def gen_png(r: _R) -> bytes:
    return _pil_bytes(_photo(r), "PNG", optimize=False)


def gen_jpeg(r: _R) -> bytes:
    return _pil_bytes(_photo(r), "JPEG", quality=r.i(50, 95))


def gen_gif(r: _R) -> bytes:
    return _pil_bytes(_photo(r).convert("P", palette=1, colors=r.pick([16, 64, 256])), "GIF")


def gen_bmp(r: _R) -> bytes:
    im = _photo(r)
    return _pil_bytes(im.resize((min(im.size[0], 96), min(im.size[1], 96))), "BMP")


def gen_tiff(r: _R) -> bytes:
    return _pil_bytes(_photo(r), "TIFF", compression=r.pick([None, "tiff_lzw", "tiff_deflate"]))


def gen_webp(r: _R) -> bytes:
    return _pil_bytes(_photo(r), "WEBP", quality=r.i(50, 95))


def gen_ico(r: _R) -> bytes:
    side = r.pick([16, 32, 48])
    return _pil_bytes(_photo(r).resize((side, side)), "ICO", sizes=[(side, side)])


def gen_pdf(r: _R) -> bytes:
    """A one-page PDF with text, written by hand (objects, xref table, trailer)."""
    lines = [r.sentence(4, 10) for _ in range(r.i(3, 25))]
    text = "BT /F1 11 Tf 72 720 Td 14 TL\n" + "\n".join(f"({s}) '" for s in lines) + "\nET"
    objs = ["<< /Type /Catalog /Pages 2 0 R >>", "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
            "/Resources << /Font << /F1 5 0 R >> >> >>",
            f"<< /Length {len(text)} >>\nstream\n{text}\nendstream",
            "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
            f"<< /Title ({r.sentence(2, 5)}) /Author ({r.person()}) /Producer (bench) >>"]
    out = "%PDF-1.4\n%\xe2\xe3\xcf\xd3\n"
    offsets = []
    for k, o in enumerate(objs, 1):
        offsets.append(len(out.encode("latin-1")))
        out += f"{k} 0 obj\n{o}\nendobj\n"
    xref = len(out.encode("latin-1"))
    out += f"xref\n0 {len(objs) + 1}\n0000000000 65535 f \n" + "".join(f"{o:010d} 00000 n \n" for o in offsets)
    out += f"trailer\n<< /Size {len(objs) + 1} /Root 1 0 R /Info 6 0 R >>\nstartxref\n{xref}\n%%EOF\n"
    return out.encode("latin-1")


GENERATORS: dict[str, Callable[[_R], bytes]] = {
    name[4:]: fn for name, fn in sorted(globals().items()) if name.startswith("gen_") and callable(fn)
}


def generate(seed: int, per_type: int) -> list[tuple[str, bytes]]:
    """`per_type` files of every type, as (label, bytes), in a fixed order; each
    type draws from its own stream so adding a type changes no other type's files."""
    out = []
    for label, fn in sorted(GENERATORS.items()):
        r = _R(np.random.default_rng([seed, zlib.crc32(label.encode())]))
        for _ in range(per_type):
            out.append((label, fn(r)))
    return out


def magika_features(content: bytes, beg_size: int, end_size: int, padding: int, block_size: int) -> np.ndarray:
    """The classifier's int32 input row: `beg_size` bytes from the start of the
    file's first block (leading whitespace stripped, padded at the end) followed
    by `end_size` bytes from the end of its last block (trailing whitespace
    stripped, padded at the start)."""
    n = min(block_size, len(content))
    beg = list(content[:n].lstrip()[:beg_size])
    beg += [padding] * (beg_size - len(beg))
    tail = content[len(content) - n:].rstrip()
    end = list(tail[max(0, len(tail) - end_size):])
    end = [padding] * (end_size - len(end)) + end
    return np.array(beg + end, dtype=np.int32)
