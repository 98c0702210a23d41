package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/berthlb/berth/config/admission"
	"github.com/berthlb/berth/importer/metallb"
)

const importUsage = `usage: %[1]s import <source> [flags] FILE...

commands:
  metallb   convert MetalLB's configuration (metallb.io IPAddressPool, L2Advertisement,
            BGPAdvertisement, BGPPeer, Community, BFDProfile) and the MetalLB annotations
            of Services in FILE... into berth's objects, as YAML on standard output

Run "%[1]s import metallb -h" for its flags; docs/migrating-from-metallb.md has the steps.
`

// importCommand dispatches "import <source>" and returns the exit code.
func importCommand(name string, args []string, stdout, stderr io.Writer) int {
	if len(args) < 1 {
		fmt.Fprintf(stderr, importUsage, name)
		return exitUsage
	}
	switch args[0] {
	case "metallb":
		return importMetalLB(name, args[1:], os.Stdin, stdout, stderr)
	case "help", "-h", "-help", "--help":
		fmt.Fprintf(stdout, importUsage, name)
		return exitOK
	default:
		fmt.Fprintf(stderr, "%s import: unknown source %q\n"+importUsage, name, args[0], name)
		return exitUsage
	}
}

// importMetalLB converts the MetalLB objects of the files: berth's objects on stdout,
// every finding on stderr (never a password). It exits 1 when a file cannot be read, an
// object could not be converted at all, or the files hold nothing of MetalLB's.
func importMetalLB(name string, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet(name+" import metallb", flag.ContinueOnError)
	fs.SetOutput(stderr)
	ns := fs.String("namespace", metallb.DefaultNamespace, "berth's namespace, the only one berth reads BGP password Secrets from: where the Secrets the output holds go")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: %[1]s import metallb [-namespace NS] FILE...\n\n"+
			"Converts MetalLB's objects (metallb.io) and the MetalLB annotations of Services in the files (- is\n"+
			"standard input) into berth's objects: YAML on standard output, each object after comments naming its\n"+
			"source; what does not carry over as it was goes to standard error. Exits 1 if an object could not be\n"+
			"converted at all. Check the output with `%[1]s check` before applying it.\n\n"+
			"Usage of %[1]s import metallb:\n", name)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return exitUsage
	}
	code := exitOK
	var objs []metallb.Object
	for _, file := range fs.Args() {
		var b []byte
		var err error
		if file == "-" {
			b, err = io.ReadAll(stdin)
		} else {
			b, err = os.ReadFile(file)
		}
		if err == nil {
			us, derr := admission.Decode(b)
			for _, u := range us {
				objs = append(objs, metallb.Object{Source: file, Object: u.Object})
			}
			err = derr
		}
		if err != nil {
			fmt.Fprintf(stderr, "error: %s: unreadable: %v\n", file, err)
			code = exitError
		}
	}
	res := metallb.Convert(objs, metallb.Options{Namespace: *ns})
	if _, err := stdout.Write(res.YAML()); err != nil {
		fmt.Fprintf(stderr, "error: write the output: %v\n", err)
		return exitError
	}
	warnings := 0
	for _, f := range res.Findings {
		if f.NotConverted {
			fmt.Fprintf(stderr, "error: %s\n", f)
		} else {
			warnings++
			fmt.Fprintf(stderr, "warning: %s\n", f)
		}
	}
	fmt.Fprintf(stderr, "%s import metallb: %d MetalLB objects and annotated Services read, %d objects written; %d warnings, %d not converted; %d other objects ignored\n",
		name, res.Read, len(res.Objects), warnings, res.NotConverted(), res.Ignored)
	switch {
	case res.NotConverted() > 0:
		code = exitError
	case res.Read == 0 && code == exitOK:
		fmt.Fprintf(stderr, "error: no MetalLB object and no Service with MetalLB annotations in %v\n", fs.Args())
		code = exitError
	}
	return code
}
