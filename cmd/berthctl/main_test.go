package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestRun checks dispatch, usage and flag errors; nothing here reaches the lab.
func TestRun(t *testing.T) {
	for _, tc := range []struct {
		name   string
		args   []string
		code   int
		stdout string // substrings of the outputs
		stderr string
	}{
		{name: "no command", args: nil, code: exitUsage, stderr: "usage: berthctl <command>"},
		{name: "version", args: []string{"version"}, code: exitOK, stdout: "berthctl dev"},
		{name: "unknown command", args: []string{"frobnicate"}, code: exitUsage, stderr: `unknown command "frobnicate"`},
		{name: "lab without command", args: []string{"lab"}, code: exitUsage, stderr: "lab <command>"},
		{name: "lab help", args: []string{"lab", "help"}, code: exitOK, stdout: "down     stop the lab's daemon"},
		{name: "lab unknown command", args: []string{"lab", "sideways"}, code: exitUsage, stderr: `unknown command "sideways"`},
		{name: "lab up -h", args: []string{"lab", "up", "-h"}, code: exitOK, stderr: "-controlplane-dir"},
		{name: "flag without value", args: []string{"lab", "up", "-nodes"}, code: exitUsage, stderr: "flag needs an argument"},
		{name: "extra arguments", args: []string{"lab", "down", "now"}, code: exitUsage, stderr: `unexpected arguments ["now"]`},
		{name: "bad prefix", args: []string{"lab", "status", "-prefix", "Bad"}, code: exitError, stderr: `netns prefix "Bad"`},
		{name: "prefix without dash", args: []string{"lab", "down", "-prefix", "lab"}, code: exitError, stderr: "trailing dash"},
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

func TestTail(t *testing.T) {
	for _, tc := range []struct {
		in   string
		n    int
		want string
	}{
		{"", 3, ""},
		{"a\nb\n", 3, "a\nb"},
		{"a\nb\nc\nd\n", 2, "c\nd"},
	} {
		if got := tail(tc.in, tc.n); got != tc.want {
			t.Errorf("tail(%q, %d) = %q, want %q", tc.in, tc.n, got, tc.want)
		}
	}
}
