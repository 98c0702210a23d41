package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// metallbSite is the realistic MetalLB configuration of the importer's golden test,
// relative to the importer's directory, which TestImport runs in.
const metallbSite = "testdata/metallb.yaml"

// TestImport: berthctl import metallb converts a whole MetalLB site; its output is what
// the importer's golden file holds, shows no password on standard error, and passes
// berthctl check: every berth object admitted, nothing config.Build objects to.
func TestImport(t *testing.T) {
	t.Chdir("../../importer/metallb") // where the golden file's sources are named from
	var stdout, stderr bytes.Buffer
	if code := run(t.Context(), "berthctl", []string{"import", "metallb", metallbSite}, &stdout, &stderr); code != exitOK {
		t.Fatalf("exit %d, want %d; stderr:\n%s", code, exitOK, stderr.String())
	}
	want, err := os.ReadFile("testdata/TestImportConvert.golden")
	if err != nil {
		t.Fatal(err)
	}
	if got := stdout.String(); got != string(want) {
		t.Errorf("output differs from the importer's TestImportConvert.golden (go test ./importer/metallb -update rewrites it):\n%s", got)
	}
	for _, secret := range []string{"not-for-stderr", "tor-b-md5-pw", "dG9yLWItbWQ1LXB3"} {
		if strings.Contains(stderr.String(), secret) {
			t.Errorf("stderr shows the password %q:\n%s", secret, stderr.String())
		}
	}
	for _, s := range []string{"warning: " + metallbSite + ": BGPPeer metallb-system/tor-a: spec.bfdProfile:",
		"16 MetalLB objects and annotated Services read, 17 objects written; 9 warnings, 0 not converted; 2 other objects ignored"} {
		if !strings.Contains(stderr.String(), s) {
			t.Errorf("stderr lacks %q:\n%s", s, stderr.String())
		}
	}

	out := filepath.Join(t.TempDir(), "berth.yaml")
	if err := os.WriteFile(out, stdout.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	var check, checkErr bytes.Buffer
	code := run(t.Context(), "berthctl", []string{"check", out}, &check, &checkErr)
	if code != exitOK || checkErr.Len() > 0 || strings.Count(check.String(), "\n") != 1 {
		t.Errorf("berthctl check of the output: exit %d, want %d and nothing but the summary:\n%s%s", code, exitOK, check.String(), checkErr.String())
	}
	if want := "17 objects in 1 files: berth's 12 (0 rejected, 0 with problems); Services 3; others 2"; !strings.Contains(check.String(), want) {
		t.Errorf("berthctl check: %q, want %q", check.String(), want)
	}
}

// TestImportRun: usage, flags and failures of berthctl import.
func TestImportRun(t *testing.T) {
	dir := t.TempDir()
	file := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	broken := file("broken.yaml", "apiVersion: metallb.io/v1beta2\nkind: BGPPeer\nmetadata: {name: p, namespace: metallb-system}\n"+
		"spec: {myASN: 64512, dynamicASN: external, peerAddress: 198.18.0.1}\n---\n"+
		"apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: lan, namespace: metallb-system}\nspec: {addresses: [198.18.2.192/26]}\n")
	none := file("none.yaml", "apiVersion: v1\nkind: Namespace\nmetadata: {name: x}\n")
	garbled := file("garbled.yaml", "kind: [\n")
	for _, tc := range []struct {
		name   string
		args   []string
		code   int
		stdout string // substrings of the outputs
		stderr string
	}{
		{name: "no source", args: []string{"import"}, code: exitUsage, stderr: "usage: berthctl import <source>"},
		{name: "help", args: []string{"import", "help"}, code: exitOK, stdout: "metallb   convert MetalLB's configuration"},
		{name: "unknown source", args: []string{"import", "cilium"}, code: exitUsage, stderr: `unknown source "cilium"`},
		{name: "no files", args: []string{"import", "metallb"}, code: exitUsage, stderr: "usage: berthctl import metallb"},
		{name: "flags", args: []string{"import", "metallb", "-h"}, code: exitOK, stderr: "Usage of berthctl import metallb:\n  -namespace string"},
		{name: "missing file", args: []string{"import", "metallb", filepath.Join(dir, "nope.yaml")}, code: exitError, stderr: "nope.yaml: unreadable"},
		{name: "garbled file", args: []string{"import", "metallb", garbled}, code: exitError, stderr: "garbled.yaml: unreadable"},
		{name: "nothing of MetalLB's", args: []string{"import", "metallb", none}, code: exitError, stderr: "error: no MetalLB object"},
		{name: "an object not converted", args: []string{"import", "metallb", "-namespace", "lb", broken}, code: exitError,
			stdout: "kind: IPPool", stderr: "error: " + broken + ": BGPPeer metallb-system/p: not converted: spec.dynamicASN: external"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(t.Context(), "berthctl", tc.args, &stdout, &stderr)
			if code != tc.code {
				t.Errorf("run(%q) = %d, want %d; stderr:\n%s", tc.args, code, tc.code, stderr.String())
			}
			if !strings.Contains(stdout.String(), tc.stdout) {
				t.Errorf("run(%q) stdout lacks %q:\n%s", tc.args, tc.stdout, stdout.String())
			}
			if !strings.Contains(stderr.String(), tc.stderr) {
				t.Errorf("run(%q) stderr lacks %q:\n%s", tc.args, tc.stderr, stderr.String())
			}
		})
	}
}
