// File: coordinator/analyzer/ask_splitter.h
// How the analyzer cuts a request into asks: sentences (at . ? ! before a capital, digit, dash
// or bullet, and at newlines; "e.g." does not end one), then connectors inside a sentence
// ("and then", ", then", "; ", "also", "after that", "and <verb>"), then leading markers
// ("1.", "-", "also", "then", "please") stripped and remembered. A piece is an ask when it
// starts with an instruction verb or a question word, or ends with "?". A long prompt's middle
// is material, never asks (WindowSentences).
// Beyond English, the connectors, markers and imperative verbs of French, German, Spanish,
// Portuguese, Italian, Russian, Dutch and Polish (an imperative may carry its pronoun:
// "traducila"), and for Chinese and Japanese "，然后" / "、次に" style connectors, leading
// markers ("先", "然后", "まず"), Chinese instruction verbs as prefixes ("翻译…", "把…") and
// Japanese requests ending in "ください". A Chinese question is not an ask by its "？" alone
// (pasted questions end the same way), and sentences are not cut at "。".
//
// Pure functions; thread-safe.
#ifndef LOOM_COORDINATOR_ANALYZER_ASK_SPLITTER_H_
#define LOOM_COORDINATOR_ANALYZER_ASK_SPLITTER_H_

#include <string>
#include <utility>
#include <vector>

#include "absl/strings/string_view.h"

namespace loom::asks {

struct Piece {
  std::string text;  // original case
  bool explicit_separate = false;
  bool sequential = false;
  bool enumerated = false;  // an item of a list: "1.", "2)", "-", "*", "•"
};

// Where an ask that introduces a list of aspects names them: "Evaluate X, focusing on the
// following areas:" gives the offset of "focusing on" (the aspect phrase) and of "the
// following"; npos when `instruction` is no such introduction.
struct AspectIntro {
  size_t phrase = std::string::npos;     // "focusing on", "concentrating on", "covering", ...
  size_t following = std::string::npos;  // "the following ..." up to the closing ':'
};
AspectIntro FindAspectIntro(absl::string_view instruction);
// True for an ask that introduces a list to work on ("Translate the following sentences:",
// "Classify these:"): the items after it are its material, not asks, even when one is a
// question.
bool IntroducesMaterial(absl::string_view instruction);
// True for a sentence that constrains the ask before it rather than asking anything: "Do not
// use a calculator.", "Don't use Python.", "Avoid jargon.", "Keep it under 100 words."
bool IsConstraint(absl::string_view text);

// The first word of a lowercase text (letters, digits, apostrophes).
std::string FirstWord(absl::string_view lower);
// Strips leading markers ("1.", "-", "also", "then", "please", ...) and records what they say.
Piece Normalize(std::string text);
// Whether `text` reads as an instruction or a question; `strong_only`: only verbs strong
// enough to start an ask inside pasted material.
bool IsInstruction(absl::string_view text, bool strong_only);
std::vector<std::string> Sentences(const std::string& text);
// Splits one sentence's instruction part at connectors. Text after the first ": " stays with
// the last piece.
std::vector<std::string> SplitConnectors(const std::string& sentence);
// The sentences of `text`, each marked true when it lies in the middle of a long prompt.
std::vector<std::pair<std::string, bool>> WindowSentences(const std::string& text);

}  // namespace loom::asks

#endif  // LOOM_COORDINATOR_ANALYZER_ASK_SPLITTER_H_
