package docs

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// link is a Markdown link's target.
var link = regexp.MustCompile(`\]\(([^)#\s]+)(#[^)]*)?\)`)

// TestDocumentsStandOnTheirOwn: the README and the documents of docs/
// name no file outside the repository, and every relative link they make
// points at a file that exists.
func TestDocumentsStandOnTheirOwn(t *testing.T) {
	for _, doc := range []string{"../README.md", "design.md", "operations.md"} {
		t.Run(filepath.Base(doc), func(t *testing.T) {
			data, err := os.ReadFile(doc)
			if err != nil {
				t.Fatal(err)
			}
			text := string(data)
			if strings.Contains(text, "../shared") {
				t.Error("refers to ../shared, which a clone of the repository does not have")
			}
			for _, m := range link.FindAllStringSubmatch(text, -1) {
				target := m[1]
				if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
					continue
				}
				path := filepath.Join(filepath.Dir(doc), target)
				if _, err := os.Stat(path); err != nil {
					t.Errorf("link to %s: %v", target, err)
				}
			}
		})
	}
}
