// Renders an Ollama Modelfile TEMPLATE for sample conversations with Go's text/template, the engine
// Ollama executes templates with, after the two steps Ollama's server takes first: the Modelfile's
// SYSTEM is put in front of a conversation that has no system message, and consecutive messages of
// one role are joined (collated, with the system messages also given as .System).
// Input (stdin): {"template": "...", "system": "...", "conversations": [[{"role": "user", "content": "hi"}]]}
// Output (stdout): a JSON list of the rendered prompts, one per conversation.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"text/template"
)

type Message struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

type Input struct {
	Template      string      `json:"template"`
	System        string      `json:"system"`
	Conversations [][]Message `json:"conversations"`
}

func collate(msgs []Message) (string, []*Message) {
	var system []string
	var collated []*Message
	for i := range msgs {
		msg := msgs[i]
		if msg.Role == "system" {
			system = append(system, msg.Content)
		}
		if len(collated) > 0 && collated[len(collated)-1].Role == msg.Role {
			collated[len(collated)-1].Content += "\n\n" + msg.Content
		} else {
			collated = append(collated, &msg)
		}
	}
	return strings.Join(system, "\n\n"), collated
}

func main() {
	var in Input
	if err := json.NewDecoder(os.Stdin).Decode(&in); err != nil {
		fmt.Fprintln(os.Stderr, "bad input:", err)
		os.Exit(2)
	}
	tmpl, err := template.New("modelfile").Parse(in.Template)
	if err != nil {
		fmt.Fprintln(os.Stderr, "template does not parse:", err)
		os.Exit(3)
	}
	out := []string{}
	for _, conversation := range in.Conversations {
		msgs := conversation
		if in.System != "" && (len(msgs) == 0 || msgs[0].Role != "system") {
			msgs = append([]Message{{Role: "system", Content: in.System}}, msgs...)
		}
		system, collated := collate(msgs)
		var b strings.Builder
		values := map[string]any{"System": system, "Messages": collated, "Prompt": "", "Response": "", "Tools": nil}
		if err := tmpl.Execute(&b, values); err != nil {
			fmt.Fprintln(os.Stderr, "template does not execute:", err)
			os.Exit(4)
		}
		out = append(out, b.String())
	}
	json.NewEncoder(os.Stdout).Encode(out)
}
