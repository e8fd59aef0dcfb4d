package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
)

// printFields prints a result as aligned "key: value" lines, in the order
// and with the names of its JSON encoding, so human and JSON output agree.
func printFields(w io.Writer, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	var ordered orderedObject
	if err := json.Unmarshal(data, &ordered); err != nil {
		fmt.Fprintln(w, string(data))
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 4, 1, ' ', 0)
	for _, kv := range ordered {
		fmt.Fprintf(tw, "%s:\t%s\n", kv.key, humanValue(kv.val))
	}
	return tw.Flush()
}

func humanValue(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var list []any
	if json.Unmarshal(raw, &list) == nil {
		parts := make([]string, len(list))
		for i, x := range list {
			parts[i] = fmt.Sprint(x)
		}
		return strings.Join(parts, ", ")
	}
	var obj map[string]any
	if json.Unmarshal(raw, &obj) == nil {
		keys := make([]string, 0, len(obj))
		for k := range obj {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		parts := make([]string, len(keys))
		for i, k := range keys {
			parts[i] = fmt.Sprintf("%s=%v", k, obj[k])
		}
		return strings.Join(parts, " ")
	}
	return string(raw)
}

type kv struct {
	key string
	val json.RawMessage
}

// orderedObject decodes a JSON object keeping its key order.
type orderedObject []kv

func (o *orderedObject) UnmarshalJSON(data []byte) error {
	dec := json.NewDecoder(strings.NewReader(string(data)))
	if _, err := dec.Token(); err != nil {
		return err
	}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return err
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return err
		}
		*o = append(*o, kv{key: t.(string), val: raw})
	}
	return nil
}
