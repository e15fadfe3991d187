package protocol

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
)

// Resign returns data with its head's sign recomputed over the body as it
// stands, and with requestUUID replaced when newUUID is not empty. Only the
// head element is rewritten: the body's bytes, and so its signed value, are
// left exactly as they were. It serves the command-line tools and tests,
// which prepare messages by hand.
func Resign(data []byte, key, newUUID string) ([]byte, error) {
	env, err := Parse(data, Limits{})
	if err != nil {
		return nil, err
	}
	uuid := env.RequestUUID
	if newUUID != "" {
		uuid = newUUID
	}
	headName := env.Type.headName()
	start, end, err := headSpan(data, headName)
	if err != nil {
		return nil, err
	}
	var head bytes.Buffer
	head.WriteString("<" + headName + "><requestUUID>")
	xml.EscapeText(&head, []byte(uuid))
	head.WriteString("</requestUUID><sign>")
	head.WriteString(Sign(env.SignedValue(), key))
	head.WriteString("</sign></" + headName + ">")

	out := make([]byte, 0, len(data)+head.Len())
	out = append(out, data[:start]...)
	out = append(out, head.Bytes()...)
	return append(out, data[end:]...), nil
}

// headSpan finds the byte range of the head element (a child of the root).
func headSpan(data []byte, headName string) (start, end int, err error) {
	d := xml.NewDecoder(bytes.NewReader(data))
	depth := 0
	for {
		before := int(d.InputOffset())
		tok, err := d.Token()
		if err == io.EOF {
			return 0, 0, fmt.Errorf("no %s element", headName)
		}
		if err != nil {
			return 0, 0, err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			depth++
			if depth == 2 && t.Name.Local == headName {
				start = before
			}
		case xml.EndElement:
			if depth == 2 && t.Name.Local == headName {
				return start, int(d.InputOffset()), nil
			}
			depth--
			if depth == 0 {
				return 0, 0, errors.New("message ended before its head")
			}
		}
	}
}
