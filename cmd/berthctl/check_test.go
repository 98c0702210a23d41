package main

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files of berthctl check")

// TestCheck runs berthctl check as a user would. That each rejection reads as the
// apiserver's is config/admission's TestAsTheCluster; here: every kind of finding is
// reported against its file, and the exit code says whether any was.
func TestCheck(t *testing.T) {
	for _, tc := range []struct {
		name  string
		files []string
		code  int
	}{
		{"demo", []string{"../../deploy/lab/demo/config.yaml", "../../deploy/lab/demo/app.yaml"}, exitOK},
		{"findings", []string{"testdata/check/conflicts.yaml", "testdata/check/rejected.yaml"}, exitError},
		{"missing", []string{"testdata/check/no-such-file.yaml"}, exitError},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(t.Context(), "berthctl", append([]string{"check"}, tc.files...), &stdout, &stderr)
			if code != tc.code || stderr.Len() > 0 {
				t.Errorf("exit %d, want %d; stderr: %s", code, tc.code, stderr.String())
			}
			golden := filepath.Join("testdata", "check-"+tc.name+".golden")
			if *update {
				if err := os.WriteFile(golden, stdout.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (go test -run TestCheck -update writes it)", err)
			}
			if stdout.String() != string(want) {
				t.Errorf("output differs from %s (go test -run TestCheck -update rewrites it):\n%s", golden, stdout.String())
			}
		})
	}
}
