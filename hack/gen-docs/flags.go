package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// binaries are the commands whose flags flags.md lists, as built from ./cmd.
var binaries = []string{"berth-controller", "berth-speaker", "berthctl"}

// buildTags are the tags of berth's binaries (the Makefile's BUILD_TAGS, lab.BuildTags):
// building with them reuses the build cache of `make build` and of the lab.
const buildTags = "grpcnotrace"

// flagsDoc builds the binaries and renders flags.md from their -h output.
func flagsDoc(root string) ([]byte, error) {
	dir, err := os.MkdirTemp("", "berth-gen-docs-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	args := []string{"build", "-tags", buildTags, "-o", dir + string(filepath.Separator)}
	for _, bin := range binaries {
		args = append(args, "./cmd/"+bin)
	}
	build := exec.Command("go", args...)
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	host, _ := os.Hostname()
	var b strings.Builder
	b.WriteString(header + "# Command-line flags\n\n")
	b.WriteString("Every flag of berth's binaries, from their `-h` output. Flags take one dash or two\n" +
		"(`-workers 8`, `--workers=8`). A blank default is the type's zero value: empty, 0 or false.\n\n")
	for _, bin := range binaries {
		fmt.Fprintf(&b, "- [%s](#%s)\n", bin, bin)
	}
	b.WriteString("\n")
	for _, bin := range binaries {
		if err := commandDoc(&b, filepath.Join(dir, bin), nil, host); err != nil {
			return nil, err
		}
	}
	return []byte(b.String()), nil
}

// commandDoc writes the section of the command bin args, and of its subcommands.
func commandDoc(b *strings.Builder, bin string, args []string, host string) error {
	name := strings.Join(append([]string{filepath.Base(bin)}, args...), " ")
	out, err := help(bin, args)
	if err != nil {
		return fmt.Errorf("%s -h: %w", name, err)
	}
	level := "##"
	if len(args) > 0 {
		level = "###"
	}
	fmt.Fprintf(b, "%s %s\n\n", level, name)
	if flags, ok := parseFlags(out); ok {
		rows := make([][]string, 0, len(flags))
		for _, f := range flags {
			def := code(f.def)
			if f.def != "" && f.def == host {
				def = "this host's name"
			}
			rows = append(rows, []string{code("-" + f.name), f.typ, def, prose(f.usage)})
		}
		table(b, []string{"Flag", "Type", "Default", "Description"}, rows)
		return nil
	}
	cmds := parseCommands(out)
	if len(cmds) == 0 {
		b.WriteString("No flags.\n\n")
		return nil
	}
	codeBlock(b, out)
	for _, c := range cmds {
		if err := commandDoc(b, bin, append(args[:len(args):len(args)], c), host); err != nil {
			return err
		}
	}
	return nil
}

// help runs bin args -h in an empty environment, so that defaults taken from variables
// such as $NODE_NAME do not leak into the reference.
func help(bin string, args []string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append(args, "-h")...)
	cmd.Env = []string{}
	cmd.Dir = os.TempDir()
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("%w\n%s", err, out)
	}
	return string(out), nil
}

// flagInfo is one flag as the flag package's PrintDefaults shows it.
type flagInfo struct {
	name, typ, def, usage string
}

// defaultRE finds the default PrintDefaults appends to a flag's usage.
var defaultRE = regexp.MustCompile(`(?s)^(.*) \(default (.*)\)$`)

// bareDefaults are the types, as PrintDefaults names them, whose defaults it does not quote.
var bareDefaults = map[string]bool{"bool": true, "int": true, "int64": true, "uint": true, "uint64": true,
	"float": true, "duration": true, "value": true}

// parseFlags reads the output of a flag.FlagSet's default usage ("Usage of x:" and
// PrintDefaults). ok is false when out is something else.
func parseFlags(out string) (flags []flagInfo, ok bool) {
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	start := -1
	for i, l := range lines {
		if strings.HasPrefix(l, "Usage of ") && strings.HasSuffix(l, ":") {
			start = i + 1
			break
		}
	}
	if start < 0 {
		return nil, false
	}
	for _, l := range lines[start:] {
		switch {
		case strings.HasPrefix(l, "    \t") && len(flags) > 0: // usage, or more of it
			f := &flags[len(flags)-1]
			f.usage = strings.TrimPrefix(f.usage+"\n"+l[len("    \t"):], "\n")
		case strings.HasPrefix(l, "  -"):
			var f flagInfo
			head := l[len("  -"):]
			if name, usage, found := strings.Cut(head, "\t"); found { // one-letter bool: usage on the same line
				f.name, f.usage = name, usage
			} else {
				f.name, f.typ, _ = strings.Cut(head, " ")
			}
			flags = append(flags, f)
		}
	}
	for i := range flags {
		f := &flags[i]
		if f.typ == "" {
			f.typ = "bool"
		}
		m := defaultRE.FindStringSubmatch(f.usage)
		if m == nil {
			continue
		}
		// PrintDefaults quotes string defaults and prints others bare. A bare default of a
		// string flag is part of the usage text: "(default $KUBECONFIG)".
		if s, err := strconv.Unquote(m[2]); err == nil && strings.HasPrefix(m[2], `"`) {
			f.usage, f.def = m[1], s
		} else if bareDefaults[f.typ] {
			f.usage, f.def = m[1], m[2]
		}
	}
	return flags, true
}

// parseCommands reads the command names from a usage text's "commands:" section: the
// lines indented by two spaces that follow it, up to a blank line.
func parseCommands(out string) []string {
	_, after, ok := strings.Cut(out, "\ncommands:\n")
	if !ok {
		return nil
	}
	var cmds []string
	for _, l := range strings.Split(after, "\n") {
		if strings.TrimSpace(l) == "" {
			break
		}
		if strings.HasPrefix(l, "  ") && l[2] != ' ' {
			cmds = append(cmds, strings.Fields(l)[0])
		}
	}
	return cmds
}
