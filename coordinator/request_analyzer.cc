#include "coordinator/request_analyzer.h"

#include <algorithm>
#include <cctype>
#include <optional>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/categories.h"
#include "common/tokens.h"
#include "coordinator/analyzer/text_features.h"

namespace loom {
namespace {

using C = v1::TaskCategory;

struct Cue {
  const char* phrase;  // lowercase; ASCII phrases match at word boundaries
  C category;
  double weight;
};

// The lexicon. Weights say how strongly a phrase points at a category; a request's category is
// the one with the largest sum. Kept in one table so it can be read and tuned as a whole.
constexpr Cue kCues[] = {
    // code
    {"code", C::TASK_CATEGORY_CODE, 1.5}, {"function", C::TASK_CATEGORY_CODE, 2},
    {"implement", C::TASK_CATEGORY_CODE, 2}, {"script", C::TASK_CATEGORY_CODE, 2},
    {"bug", C::TASK_CATEGORY_CODE, 2}, {"debug", C::TASK_CATEGORY_CODE, 2.5},
    {"compile", C::TASK_CATEGORY_CODE, 1.5}, {"refactor", C::TASK_CATEGORY_CODE, 3},
    {"regex", C::TASK_CATEGORY_CODE, 3}, {"unit test", C::TASK_CATEGORY_CODE, 2.5},
    {"unit tests", C::TASK_CATEGORY_CODE, 2.5}, {"class", C::TASK_CATEGORY_CODE, 1.2},
    {"method", C::TASK_CATEGORY_CODE, 1.2}, {"methods", C::TASK_CATEGORY_CODE, 1},
    {"interface", C::TASK_CATEGORY_CODE, 1.2}, {"component", C::TASK_CATEGORY_CODE, 1.2},
    {"query", C::TASK_CATEGORY_CODE, 1.2}, {"dockerfile", C::TASK_CATEGORY_CODE, 3},
    {"segfault", C::TASK_CATEGORY_CODE, 3}, {"api", C::TASK_CATEGORY_CODE, 1},
    {"algorithm", C::TASK_CATEGORY_CODE, 1}, {"program", C::TASK_CATEGORY_CODE, 1},
    {"fix", C::TASK_CATEGORY_CODE, 1}, {"error handling", C::TASK_CATEGORY_CODE, 1.5},
    {"race condition", C::TASK_CATEGORY_CODE, 2}, {"race conditions", C::TASK_CATEGORY_CODE, 2},
    {"stack trace", C::TASK_CATEGORY_CODE, 3}, {"recursive", C::TASK_CATEGORY_CODE, 1.5},
    {"python", C::TASK_CATEGORY_CODE, 2}, {"rust", C::TASK_CATEGORY_CODE, 2},
    {"c++", C::TASK_CATEGORY_CODE, 2}, {"c#", C::TASK_CATEGORY_CODE, 2},
    {"java", C::TASK_CATEGORY_CODE, 2}, {"javascript", C::TASK_CATEGORY_CODE, 2},
    {"typescript", C::TASK_CATEGORY_CODE, 2}, {"golang", C::TASK_CATEGORY_CODE, 2},
    {"go code", C::TASK_CATEGORY_CODE, 2}, {"go function", C::TASK_CATEGORY_CODE, 2},
    {"in go", C::TASK_CATEGORY_CODE, 1.5}, {"kotlin", C::TASK_CATEGORY_CODE, 2},
    {"swift", C::TASK_CATEGORY_CODE, 1.5}, {"ruby", C::TASK_CATEGORY_CODE, 1.5},
    {"php", C::TASK_CATEGORY_CODE, 2}, {"sql", C::TASK_CATEGORY_CODE, 2},
    {"bash", C::TASK_CATEGORY_CODE, 2}, {"shell", C::TASK_CATEGORY_CODE, 1},
    {"haskell", C::TASK_CATEGORY_CODE, 2}, {"scala", C::TASK_CATEGORY_CODE, 2},
    {"react", C::TASK_CATEGORY_CODE, 1.5}, {"pytest", C::TASK_CATEGORY_CODE, 2},
    {"in c", C::TASK_CATEGORY_CODE, 1.5}, {"c code", C::TASK_CATEGORY_CODE, 2},
    {"代码", C::TASK_CATEGORY_CODE, 2.5}, {"函数", C::TASK_CATEGORY_CODE, 2.5},
    {"编程", C::TASK_CATEGORY_CODE, 2.5}, {"程序", C::TASK_CATEGORY_CODE, 2},
    // reasoning
    {"why", C::TASK_CATEGORY_REASONING, 1}, {"explain", C::TASK_CATEGORY_REASONING, 1},
    {"prove", C::TASK_CATEGORY_REASONING, 2.5}, {"proof", C::TASK_CATEGORY_REASONING, 2},
    {"calculate", C::TASK_CATEGORY_REASONING, 2.5}, {"compute", C::TASK_CATEGORY_REASONING, 1.5},
    {"solve", C::TASK_CATEGORY_REASONING, 2.5}, {"probability", C::TASK_CATEGORY_REASONING, 2.5},
    {"compare", C::TASK_CATEGORY_REASONING, 2}, {"comparison", C::TASK_CATEGORY_REASONING, 1.5},
    {"difference", C::TASK_CATEGORY_REASONING, 1.5}, {"differences", C::TASK_CATEGORY_REASONING, 1.5},
    {"analyze", C::TASK_CATEGORY_REASONING, 2}, {"analyse", C::TASK_CATEGORY_REASONING, 2},
    {"analysis", C::TASK_CATEGORY_REASONING, 1.5}, {"evaluate", C::TASK_CATEGORY_REASONING, 2},
    {"pros and cons", C::TASK_CATEGORY_REASONING, 2.5}, {"trade-offs", C::TASK_CATEGORY_REASONING, 2.5},
    {"trade-off", C::TASK_CATEGORY_REASONING, 2.5}, {"tradeoffs", C::TASK_CATEGORY_REASONING, 2.5},
    {"step by step", C::TASK_CATEGORY_REASONING, 1.5}, {"reasoning", C::TASK_CATEGORY_REASONING, 2},
    {"reason through", C::TASK_CATEGORY_REASONING, 2}, {"how many ways", C::TASK_CATEGORY_REASONING, 3},
    {"estimate", C::TASK_CATEGORY_REASONING, 2}, {"complexity", C::TASK_CATEGORY_REASONING, 1.5},
    {"argument", C::TASK_CATEGORY_REASONING, 1.5}, {"is it better", C::TASK_CATEGORY_REASONING, 1.5},
    {"which is better", C::TASK_CATEGORY_REASONING, 1}, {"equation", C::TASK_CATEGORY_REASONING, 2.5},
    {"equations", C::TASK_CATEGORY_REASONING, 2.5}, {"break-even", C::TASK_CATEGORY_REASONING, 3},
    {"interest", C::TASK_CATEGORY_REASONING, 1}, {"catch up", C::TASK_CATEGORY_REASONING, 1.5},
    {"how much", C::TASK_CATEGORY_REASONING, 1}, {"older than", C::TASK_CATEGORY_REASONING, 1.5},
    {"paradox", C::TASK_CATEGORY_REASONING, 1.5}, {"if all", C::TASK_CATEGORY_REASONING, 2.5}, {"moral", C::TASK_CATEGORY_REASONING, 1},
    {"logic", C::TASK_CATEGORY_REASONING, 2}, {"math", C::TASK_CATEGORY_REASONING, 2},
    {"average", C::TASK_CATEGORY_REASONING, 1.5}, {"per", C::TASK_CATEGORY_REASONING, 0.5},
    {"计算", C::TASK_CATEGORY_REASONING, 3}, {"数学", C::TASK_CATEGORY_REASONING, 3},
    {"为什么", C::TASK_CATEGORY_REASONING, 1.5}, {"推理", C::TASK_CATEGORY_REASONING, 2.5},
    // creative
    {"poem", C::TASK_CATEGORY_CREATIVE, 3}, {"haiku", C::TASK_CATEGORY_CREATIVE, 3},
    {"story", C::TASK_CATEGORY_CREATIVE, 2.5}, {"limerick", C::TASK_CATEGORY_CREATIVE, 3},
    {"sonnet", C::TASK_CATEGORY_CREATIVE, 3}, {"song", C::TASK_CATEGORY_CREATIVE, 2},
    {"lyrics", C::TASK_CATEGORY_CREATIVE, 2.5}, {"slogan", C::TASK_CATEGORY_CREATIVE, 3},
    {"joke", C::TASK_CATEGORY_CREATIVE, 3}, {"brainstorm", C::TASK_CATEGORY_CREATIVE, 3},
    {"ideas", C::TASK_CATEGORY_CREATIVE, 1.5}, {"names for", C::TASK_CATEGORY_CREATIVE, 2},
    {"imagine", C::TASK_CATEGORY_CREATIVE, 2.5}, {"fictional", C::TASK_CATEGORY_CREATIVE, 2.5},
    {"character", C::TASK_CATEGORY_CREATIVE, 1}, {"plot", C::TASK_CATEGORY_CREATIVE, 1.5},
    {"novel", C::TASK_CATEGORY_CREATIVE, 1.5}, {"fable", C::TASK_CATEGORY_CREATIVE, 3},
    {"dialogue", C::TASK_CATEGORY_CREATIVE, 2}, {"toast", C::TASK_CATEGORY_CREATIVE, 2},
    {"jingle", C::TASK_CATEGORY_CREATIVE, 3}, {"invent", C::TASK_CATEGORY_CREATIVE, 2},
    {"creative", C::TASK_CATEGORY_CREATIVE, 2.5}, {"bedtime", C::TASK_CATEGORY_CREATIVE, 1.5},
    {"birthday message", C::TASK_CATEGORY_CREATIVE, 2}, {"compose", C::TASK_CATEGORY_CREATIVE, 1.5},
    {"come up with", C::TASK_CATEGORY_CREATIVE, 1.5}, {"playful", C::TASK_CATEGORY_CREATIVE, 1.5},
    {"funny", C::TASK_CATEGORY_CREATIVE, 1.5}, {"sci-fi", C::TASK_CATEGORY_CREATIVE, 2},
    {"opening paragraph", C::TASK_CATEGORY_CREATIVE, 2}, {"essay", C::TASK_CATEGORY_CREATIVE, 1},
    {"诗", C::TASK_CATEGORY_CREATIVE, 3}, {"故事", C::TASK_CATEGORY_CREATIVE, 3},
    {"创作", C::TASK_CATEGORY_CREATIVE, 2.5}, {"想法", C::TASK_CATEGORY_CREATIVE, 1.5},
    // factual
    {"what is", C::TASK_CATEGORY_FACTUAL, 1.2}, {"what are", C::TASK_CATEGORY_FACTUAL, 0.8},
    {"who was", C::TASK_CATEGORY_FACTUAL, 2.5}, {"who is", C::TASK_CATEGORY_FACTUAL, 2},
    {"who wrote", C::TASK_CATEGORY_FACTUAL, 3}, {"who invented", C::TASK_CATEGORY_FACTUAL, 3},
    {"who discovered", C::TASK_CATEGORY_FACTUAL, 3}, {"when did", C::TASK_CATEGORY_FACTUAL, 2.5},
    {"when was", C::TASK_CATEGORY_FACTUAL, 2.5}, {"what year", C::TASK_CATEGORY_FACTUAL, 2.5},
    {"where is", C::TASK_CATEGORY_FACTUAL, 2.5}, {"how many", C::TASK_CATEGORY_FACTUAL, 1.2},
    {"how tall", C::TASK_CATEGORY_FACTUAL, 2.5}, {"capital of", C::TASK_CATEGORY_FACTUAL, 3},
    {"history of", C::TASK_CATEGORY_FACTUAL, 2.5}, {"tell me about", C::TASK_CATEGORY_FACTUAL, 2}, {"tell me what", C::TASK_CATEGORY_FACTUAL, 2},
    {"define", C::TASK_CATEGORY_FACTUAL, 2.5}, {"definition", C::TASK_CATEGORY_FACTUAL, 2},
    {"stand for", C::TASK_CATEGORY_FACTUAL, 2.5}, {"which planet", C::TASK_CATEGORY_FACTUAL, 2},
    {"what causes", C::TASK_CATEGORY_FACTUAL, 2}, {"largest", C::TASK_CATEGORY_FACTUAL, 1.2},
    {"tallest", C::TASK_CATEGORY_FACTUAL, 1.5}, {"closest", C::TASK_CATEGORY_FACTUAL, 1},
    {"population", C::TASK_CATEGORY_FACTUAL, 1.5}, {"invented", C::TASK_CATEGORY_FACTUAL, 1.5},
    {"what language", C::TASK_CATEGORY_FACTUAL, 2}, {"boiling point", C::TASK_CATEGORY_FACTUAL, 2},
    {"speed of light", C::TASK_CATEGORY_FACTUAL, 2}, {"located", C::TASK_CATEGORY_FACTUAL, 1.5},
    {"什么是", C::TASK_CATEGORY_FACTUAL, 2}, {"是谁", C::TASK_CATEGORY_FACTUAL, 2.5},
    {"哪里", C::TASK_CATEGORY_FACTUAL, 2}, {"哪个", C::TASK_CATEGORY_FACTUAL, 1.5},
    {"什么时候", C::TASK_CATEGORY_FACTUAL, 2},
    // summarization
    {"summarize", C::TASK_CATEGORY_SUMMARIZATION, 3.5}, {"summarise", C::TASK_CATEGORY_SUMMARIZATION, 3.5},
    {"summary", C::TASK_CATEGORY_SUMMARIZATION, 3}, {"tl;dr", C::TASK_CATEGORY_SUMMARIZATION, 3.5},
    {"tldr", C::TASK_CATEGORY_SUMMARIZATION, 3.5}, {"condense", C::TASK_CATEGORY_SUMMARIZATION, 3},
    {"key points", C::TASK_CATEGORY_SUMMARIZATION, 3}, {"news story", C::TASK_CATEGORY_SUMMARIZATION, 1.5}, {"recap", C::TASK_CATEGORY_SUMMARIZATION, 3},
    {"gist", C::TASK_CATEGORY_SUMMARIZATION, 3}, {"shorten", C::TASK_CATEGORY_SUMMARIZATION, 3},
    {"abstract", C::TASK_CATEGORY_SUMMARIZATION, 2}, {"overview", C::TASK_CATEGORY_SUMMARIZATION, 2},
    {"key takeaways", C::TASK_CATEGORY_SUMMARIZATION, 3}, {"boil this down", C::TASK_CATEGORY_SUMMARIZATION, 3},
    {"main arguments", C::TASK_CATEGORY_SUMMARIZATION, 2}, {"essentials", C::TASK_CATEGORY_SUMMARIZATION, 2},
    {"in a few sentences", C::TASK_CATEGORY_SUMMARIZATION, 1.5}, {"in one sentence", C::TASK_CATEGORY_SUMMARIZATION, 1.5},
    {"总结", C::TASK_CATEGORY_SUMMARIZATION, 3.5}, {"摘要", C::TASK_CATEGORY_SUMMARIZATION, 3.5},
    {"概括", C::TASK_CATEGORY_SUMMARIZATION, 3.5}, {"归纳", C::TASK_CATEGORY_SUMMARIZATION, 3},
    // translation (the language names are handled in Score)
    {"translate", C::TASK_CATEGORY_TRANSLATION, 2.5}, {"translation", C::TASK_CATEGORY_TRANSLATION, 2},
    {"how do you say", C::TASK_CATEGORY_TRANSLATION, 3}, {"how would you say", C::TASK_CATEGORY_TRANSLATION, 3},
    {"mean in", C::TASK_CATEGORY_TRANSLATION, 2}, {"render this", C::TASK_CATEGORY_TRANSLATION, 1},
    {"put this into", C::TASK_CATEGORY_TRANSLATION, 1},
    {"翻译", C::TASK_CATEGORY_TRANSLATION, 4}, {"译成", C::TASK_CATEGORY_TRANSLATION, 3},
    // structured
    {"json", C::TASK_CATEGORY_STRUCTURED, 3}, {"csv", C::TASK_CATEGORY_STRUCTURED, 3},
    {"yaml", C::TASK_CATEGORY_STRUCTURED, 3}, {"xml", C::TASK_CATEGORY_STRUCTURED, 2.5},
    {"table", C::TASK_CATEGORY_STRUCTURED, 1.5}, {"a table", C::TASK_CATEGORY_STRUCTURED, 1.5},
    {"markdown table", C::TASK_CATEGORY_STRUCTURED, 1.5}, {"into a table", C::TASK_CATEGORY_STRUCTURED, 1}, {"schema", C::TASK_CATEGORY_STRUCTURED, 2.5},
    {"extract", C::TASK_CATEGORY_STRUCTURED, 2.5}, {"key-value", C::TASK_CATEGORY_STRUCTURED, 3},
    {"fields", C::TASK_CATEGORY_STRUCTURED, 2}, {"structured", C::TASK_CATEGORY_STRUCTURED, 3},
    {"columns", C::TASK_CATEGORY_STRUCTURED, 2.5}, {"parse", C::TASK_CATEGORY_STRUCTURED, 1},
    {"format as", C::TASK_CATEGORY_STRUCTURED, 2}, {"template", C::TASK_CATEGORY_STRUCTURED, 1.5},
    {"classify", C::TASK_CATEGORY_STRUCTURED, 2}, {"organize these", C::TASK_CATEGORY_STRUCTURED, 1.5},
    {"as a list", C::TASK_CATEGORY_STRUCTURED, 1}, {"config", C::TASK_CATEGORY_STRUCTURED, 1},
    {"提取", C::TASK_CATEGORY_STRUCTURED, 3}, {"表格", C::TASK_CATEGORY_STRUCTURED, 3},
    {"分类", C::TASK_CATEGORY_STRUCTURED, 2},
    // generic math vocabulary and other-language words for the same skills
    {"integer", C::TASK_CATEGORY_REASONING, 2}, {"integers", C::TASK_CATEGORY_REASONING, 2},
    {"prime", C::TASK_CATEGORY_REASONING, 1.5}, {"derivative", C::TASK_CATEGORY_REASONING, 2.5},
    {"integral", C::TASK_CATEGORY_REASONING, 2.5}, {"matrix", C::TASK_CATEGORY_REASONING, 1.5},
    {"theorem", C::TASK_CATEGORY_REASONING, 2.5}, {"compounded", C::TASK_CATEGORY_REASONING, 2},
    {"randomly", C::TASK_CATEGORY_REASONING, 1.5}, {"find the", C::TASK_CATEGORY_REASONING, 1},
    {"determine", C::TASK_CATEGORY_REASONING, 1}, {"sum of", C::TASK_CATEGORY_REASONING, 1.5},
    {"expected value", C::TASK_CATEGORY_REASONING, 2.5}, {"\\frac", C::TASK_CATEGORY_REASONING, 3},
    {"\\sqrt", C::TASK_CATEGORY_REASONING, 3}, {"方程", C::TASK_CATEGORY_REASONING, 2.5},
    {"求", C::TASK_CATEGORY_REASONING, 1}, {"概率", C::TASK_CATEGORY_REASONING, 2.5},
    {"in the style of", C::TASK_CATEGORY_CREATIVE, 2}, {"scene", C::TASK_CATEGORY_CREATIVE, 1.5},
    {"chapter", C::TASK_CATEGORY_CREATIVE, 1.5}, {"verse", C::TASK_CATEGORY_CREATIVE, 2},
    {"rap", C::TASK_CATEGORY_CREATIVE, 2}, {"screenplay", C::TASK_CATEGORY_CREATIVE, 3},
    {"narrative", C::TASK_CATEGORY_CREATIVE, 2}, {"tale", C::TASK_CATEGORY_CREATIVE, 2},
    {"fiction", C::TASK_CATEGORY_CREATIVE, 2.5}, {"protagonist", C::TASK_CATEGORY_CREATIVE, 2.5},
    {"rhyme", C::TASK_CATEGORY_CREATIVE, 2.5}, {"rhyming", C::TASK_CATEGORY_CREATIVE, 2.5},
    {"stanza", C::TASK_CATEGORY_CREATIVE, 3}, {"poema", C::TASK_CATEGORY_CREATIVE, 3},
    {"gedicht", C::TASK_CATEGORY_CREATIVE, 3}, {"poème", C::TASK_CATEGORY_CREATIVE, 3},
    {"стих", C::TASK_CATEGORY_CREATIVE, 3}, {"puisi", C::TASK_CATEGORY_CREATIVE, 3},
    {"번역", C::TASK_CATEGORY_TRANSLATION, 4}, {"翻訳", C::TASK_CATEGORY_TRANSLATION, 4},
    {"traduce", C::TASK_CATEGORY_TRANSLATION, 3}, {"traducir", C::TASK_CATEGORY_TRANSLATION, 3},
    {"traduire", C::TASK_CATEGORY_TRANSLATION, 3}, {"traduis", C::TASK_CATEGORY_TRANSLATION, 3},
    {"übersetze", C::TASK_CATEGORY_TRANSLATION, 3}, {"übersetzen", C::TASK_CATEGORY_TRANSLATION, 3},
    {"переведи", C::TASK_CATEGORY_TRANSLATION, 3}, {"перевод", C::TASK_CATEGORY_TRANSLATION, 3},
    {"terjemahkan", C::TASK_CATEGORY_TRANSLATION, 3},
    {"요약", C::TASK_CATEGORY_SUMMARIZATION, 3.5}, {"resumir", C::TASK_CATEGORY_SUMMARIZATION, 3},
    {"resume", C::TASK_CATEGORY_SUMMARIZATION, 2}, {"zusammenfass", C::TASK_CATEGORY_SUMMARIZATION, 3},
    {"résumé", C::TASK_CATEGORY_SUMMARIZATION, 2}, {"html", C::TASK_CATEGORY_CODE, 1.5},
    {"css", C::TASK_CATEGORY_CODE, 1.5}, {"flutter", C::TASK_CATEGORY_CODE, 2},
    {"什么", C::TASK_CATEGORY_FACTUAL, 1.2}, {"多少", C::TASK_CATEGORY_FACTUAL, 1},
    // general
    {"help me", C::TASK_CATEGORY_GENERAL, 1}, {"advice", C::TASK_CATEGORY_GENERAL, 2.5},
    {"tips", C::TASK_CATEGORY_GENERAL, 2.5}, {"recommend", C::TASK_CATEGORY_GENERAL, 2},
    {"suggest", C::TASK_CATEGORY_GENERAL, 1.2}, {"how do i", C::TASK_CATEGORY_GENERAL, 1},
    {"how can i", C::TASK_CATEGORY_GENERAL, 1.5}, {"plan my", C::TASK_CATEGORY_GENERAL, 2},
    {"should i", C::TASK_CATEGORY_GENERAL, 1.5}, {"what should i", C::TASK_CATEGORY_GENERAL, 1},
    {"how are you", C::TASK_CATEGORY_GENERAL, 2.5}, {"hello", C::TASK_CATEGORY_GENERAL, 1.5},
    {"hi", C::TASK_CATEGORY_GENERAL, 1.5}, {"thanks", C::TASK_CATEGORY_GENERAL, 2.5},
    {"thank you", C::TASK_CATEGORY_GENERAL, 2}, {"rewrite", C::TASK_CATEGORY_GENERAL, 1.5},
    {"professional", C::TASK_CATEGORY_GENERAL, 1}, {"polite", C::TASK_CATEGORY_GENERAL, 1.5},
    {"itinerary", C::TASK_CATEGORY_GENERAL, 2}, {"habits", C::TASK_CATEGORY_GENERAL, 1.5},
    {"routine", C::TASK_CATEGORY_GENERAL, 1}, {"organize my", C::TASK_CATEGORY_GENERAL, 2},
    {"pack for", C::TASK_CATEGORY_GENERAL, 2}, {"improve my", C::TASK_CATEGORY_GENERAL, 1.5},
    {"good way to", C::TASK_CATEGORY_GENERAL, 1.5}, {"best way to", C::TASK_CATEGORY_GENERAL, 1.5},
    {"keep my", C::TASK_CATEGORY_GENERAL, 1.5}, {"ask my", C::TASK_CATEGORY_GENERAL, 1.5},
    {"reply", C::TASK_CATEGORY_GENERAL, 1.5}, {"建议", C::TASK_CATEGORY_GENERAL, 2},
    {"改写", C::TASK_CATEGORY_GENERAL, 2}, {"润色", C::TASK_CATEGORY_GENERAL, 2},
};

constexpr const char* kNaturalLanguages[] = {
    "english", "french", "spanish", "german", "italian", "portuguese", "japanese", "chinese",
    "mandarin", "korean", "russian", "arabic", "hindi", "dutch", "swedish", "norwegian",
    "danish", "finnish", "polish", "turkish", "greek", "hebrew", "swahili", "vietnamese",
    "thai", "indonesian", "ukrainian", "czech", "latin", "英文", "英语", "中文", "日语", "法语"};

constexpr const char* kProgrammingLanguages[] = {
    "python", "rust", "c++", "c#", "java", "javascript", "typescript", "golang", "kotlin",
    "swift", "ruby", "php", "haskell", "scala", "go"};

// Words that begin an instruction.
constexpr const char* kVerbs[] = {
    "write", "implement", "create", "explain", "translate", "summarize", "summarise", "list",
    "give", "compare", "describe", "convert", "calculate", "compute", "solve", "prove",
    "analyze", "analyse", "evaluate", "tell", "provide", "generate", "make", "format",
    "suggest", "return", "put", "present", "extract", "add", "fix", "review", "refactor",
    "optimize", "port", "draft", "compose", "brainstorm", "come", "invent", "imagine",
    "estimate", "define", "render", "parse", "turn", "organize", "classify", "output", "fill",
    "show", "find", "help", "recommend", "rewrite", "condense", "shorten", "recap", "boil",
    "plan", "build", "design", "outline", "discuss", "say", "do", "reason", "draw", "count",
    "rephrase", "paraphrase", "arrange", "sort", "rank", "identify", "answer", "assess",
    "explore", "determine", "justify", "simplify", "correct", "proofread", "debug", "predict"};

// Verbs that may start a new ask after " and " ("... and explain ...").
constexpr const char* kJoinVerbs[] = {
    "explain", "summarize", "summarise", "translate", "write", "list", "compare", "describe",
    "give", "create", "convert", "analyze", "analyse", "tell", "provide", "generate", "format",
    "calculate", "return", "put", "present", "extract", "evaluate", "prove", "then",
    "rephrase", "paraphrase", "sort", "rank", "answer", "identify", "assess", "justify"};

// Verbs strong enough to start an ask inside pasted material.
constexpr const char* kStrongVerbs[] = {
    "explain", "summarize", "summarise", "translate", "write", "add", "convert", "list",
    "compare", "give", "create", "calculate", "extract", "return", "implement", "evaluate",
    "describe"};

constexpr const char* kQuestionWords[] = {
    "what", "who", "when", "where", "why", "how", "which", "is", "are", "can", "could", "do",
    "does", "should", "would", "will", "did", "was", "were"};

// Words that mark a request as vague (no category can be ahead).
constexpr const char* kVague[] = {
    "something", "anything", "thoughts", "surprise", "better", "best take", "nice",
    "think about", "meaning of", "future", "help me with my", "whatever", "fun", "interesting",
    "what would happen"};

// Phrases that mean "the result of an earlier ask".
constexpr const char* kBackReferences[] = {
    "it", "them", "the result", "the results", "the code", "the translation", "the summary",
    "the two", "both", "the above", "this function", "the function", "the story", "the poem",
    "your explanation", "the comparison", "the solution", "the winner", "the same function",
    "you covered", "the two implementations", "the two versions", "the paradox", "the moral",
    "its", "that"};

bool IsWordByte(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
         c >= 0x80;
}

// Occurrences of `phrase` in `lower` at word boundaries (for ASCII phrases).
int CountPhrase(absl::string_view lower, absl::string_view phrase) {
  const bool ascii = static_cast<unsigned char>(phrase.front()) < 0x80;
  int count = 0;
  for (size_t pos = lower.find(phrase); pos != absl::string_view::npos;
       pos = lower.find(phrase, pos + 1)) {
    if (ascii) {
      const bool left_ok =
          pos == 0 || !IsWordByte(lower[pos - 1]) || !IsWordByte(phrase.front());
      const size_t end = pos + phrase.size();
      const bool right_ok =
          end >= lower.size() || !IsWordByte(lower[end]) || !IsWordByte(phrase.back());
      if (!left_ok || !right_ok) continue;
    }
    ++count;
  }
  return count;
}

bool HasPhrase(absl::string_view lower, absl::string_view phrase) {
  return CountPhrase(lower, phrase) > 0;
}

template <size_t N>
bool HasAny(absl::string_view lower, const char* const (&phrases)[N]) {
  for (const char* p : phrases) {
    if (HasPhrase(lower, p)) return true;
  }
  return false;
}

template <size_t N>
bool IsOneOf(absl::string_view word, const char* const (&words)[N]) {
  for (const char* w : words) {
    if (word == w) return true;
  }
  return false;
}

// Splits `text` into what the client wrote as instructions and what it pasted or quoted:
// quoted spans are dropped, text after the first ": " goes to `payload`.
void SplitInstruction(absl::string_view text, std::string* instruction, std::string* payload) {
  std::string unquoted;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    const bool opens = (c == '"' || c == '`') ||
                       (c == '\'' && (i == 0 || absl::string_view(" (:\n").find(text[i - 1]) !=
                                                    absl::string_view::npos));
    if (opens) {
      size_t j = i + 1;
      for (; j < text.size(); ++j) {
        if (text[j] != c) continue;
        if (c != '\'' || j + 1 >= text.size() ||
            absl::string_view(" .,;:!?)\n").find(text[j + 1]) != absl::string_view::npos) {
          break;
        }
      }
      if (j < text.size()) {
        unquoted += ' ';
        i = j;
        continue;
      }
    }
    unquoted += c;
  }
  size_t colon = std::string::npos;
  for (size_t i = 0; i + 1 < unquoted.size(); ++i) {
    if (unquoted[i] == ':' && (unquoted[i + 1] == ' ' || unquoted[i + 1] == '\n')) {
      colon = i;
      break;
    }
  }
  if (colon == std::string::npos) {
    *instruction = unquoted;
    payload->clear();
  } else {
    *instruction = unquoted.substr(0, colon);
    *payload = unquoted.substr(colon + 1);
  }
}

// The runs of word bytes in a text, to skip looking for a phrase whose first word the text
// lacks: a match of a phrase starting with a word byte begins at a word boundary (CountPhrase),
// so the text has that first word as a whole run. Turns ~160 substring searches per prompt into
// a few hash lookups and the searches that can match.
class WordIndex {
 public:
  explicit WordIndex(absl::string_view lower) : lower_(lower) {
    for (size_t i = 0; i < lower.size();) {
      if (!IsWordByte(lower[i])) {
        ++i;
        continue;
      }
      size_t j = i;
      while (j < lower.size() && IsWordByte(lower[j])) ++j;
      // Each word's starts form a chain through next_ (no allocation per word).
      auto [it, inserted] = words_.try_emplace(lower.substr(i, j - i), static_cast<int32_t>(starts_.size()));
      starts_.push_back(static_cast<uint32_t>(i));
      next_.push_back(inserted ? -1 : it->second);
      it->second = static_cast<int32_t>(starts_.size() - 1);
      i = j;
    }
  }
  // The word a match of `phrase` must have whole in the text; empty when there is no such rule.
  static absl::string_view Lead(absl::string_view phrase) {
    const unsigned char front = phrase.empty() ? 0 : static_cast<unsigned char>(phrase.front());
    if (front == 0 || front >= 0x80 || !IsWordByte(front)) return {};
    size_t k = 0;
    while (k < phrase.size() && IsWordByte(phrase[k])) ++k;
    return phrase.substr(0, k);
  }
  // The distinct words of the text, each with the last of its starts (an index into starts_).
  const absl::flat_hash_map<absl::string_view, int32_t>& words() const { return words_; }

  // CountPhrase(text, phrase), looking only where the phrase's leading word starts.
  int Count(absl::string_view phrase) const {
    const absl::string_view lead = Lead(phrase);
    if (lead.empty()) return CountPhrase(lower_, phrase);
    auto it = words_.find(lead);
    if (it == words_.end()) return 0;
    int count = 0;
    for (int32_t k = it->second; k >= 0; k = next_[k]) {
      const uint32_t pos = starts_[k];
      if (lower_.substr(pos, phrase.size()) != phrase) continue;
      const size_t end = pos + phrase.size();
      if (end < lower_.size() && IsWordByte(lower_[end]) && IsWordByte(phrase.back())) continue;
      ++count;
    }
    return count;
  }
  bool Has(absl::string_view phrase) const { return Count(phrase) > 0; }
  template <size_t N>
  bool HasAny(const char* const (&phrases)[N]) const {
    for (const char* p : phrases) {
      if (Has(p)) return true;
    }
    return false;
  }

 private:
  absl::string_view lower_;
  absl::flat_hash_map<absl::string_view, int32_t> words_;
  std::vector<uint32_t> starts_;  // where each word of the text starts
  std::vector<int32_t> next_;     // the previous start of the same word, or -1
};

// The cues that can match `index`'s text, in kCues order: those whose leading word the text has
// (looked up once per word of the text, not once per cue), and those without a leading word.
std::vector<uint16_t> CandidateCues(const WordIndex& index) {
  struct ByLead {
    std::vector<absl::string_view> lead;  // of each cue
    absl::flat_hash_map<absl::string_view, std::vector<uint16_t>> cues;
    std::vector<uint16_t> without_lead;
  };
  static_assert(std::size(kCues) <= 65535, "cue indices are uint16_t");
  static const ByLead* const kByLead = [] {
    auto* by = new ByLead;
    for (size_t i = 0; i < std::size(kCues); ++i) {
      const absl::string_view lead = WordIndex::Lead(kCues[i].phrase);
      by->lead.push_back(lead);
      (lead.empty() ? by->without_lead : by->cues[lead]).push_back(static_cast<uint16_t>(i));
    }
    return by;
  }();
  std::vector<uint16_t> out;
  if (index.words().size() >= kByLead->cues.size()) {
    // A long text: one lookup per distinct lead word is cheaper than one per word of the text.
    for (size_t i = 0; i < std::size(kCues); ++i) {
      const absl::string_view lead = kByLead->lead[i];
      if (lead.empty() || index.words().contains(lead)) out.push_back(static_cast<uint16_t>(i));
    }
    return out;
  }
  out = kByLead->without_lead;
  for (const auto& [word, positions] : index.words()) {
    auto it = kByLead->cues.find(word);
    if (it != kByLead->cues.end()) out.insert(out.end(), it->second.begin(), it->second.end());
  }
  // kCues order, so the scores add up in the same order as a scan of every cue.
  std::sort(out.begin(), out.end());
  return out;
}

std::array<double, 9> ScoreLower(absl::string_view lower) {
  std::array<double, 9> s{};
  const WordIndex index(lower);
  for (uint16_t i : CandidateCues(index)) {
    const Cue& cue = kCues[i];
    const int n = index.Count(cue.phrase);
    if (n > 0) s[cue.category] += cue.weight * std::min(n, 2);
  }
  const bool programming =
      index.HasAny(kProgrammingLanguages) || index.Has("in c") || index.Has("sql");
  const bool natural = index.HasAny(kNaturalLanguages);
  const bool translating = index.Has("translate") || index.Has("convert") || index.Has("port") ||
                           index.Has("translation");
  if (translating && programming && !natural) {
    // "Translate this Python code to Rust" is code, not translation.
    s[C::TASK_CATEGORY_CODE] += 3;
    s[C::TASK_CATEGORY_TRANSLATION] = 0;
  } else if (natural) {
    for (const char* lang : kNaturalLanguages) {
      for (const char* prep : {"into ", "to ", "in ", "from "}) {
        if (index.Has(absl::StrCat(prep, lang))) {
          s[C::TASK_CATEGORY_TRANSLATION] += 2;
          break;
        }
      }
    }
  }
  // Arithmetic.
  for (size_t i = 1; i + 1 < lower.size(); ++i) {
    const char c = lower[i];
    if ((c == '%' && std::isdigit(static_cast<unsigned char>(lower[i - 1]))) ||
        ((c == '+' || c == '=' || c == '*' || c == '/') &&
         (std::isdigit(static_cast<unsigned char>(lower[i - 1])) ||
          std::isdigit(static_cast<unsigned char>(lower[i + 1])) ||
          (i >= 2 && std::isdigit(static_cast<unsigned char>(lower[i - 2]))) ||
          (i + 2 < lower.size() && std::isdigit(static_cast<unsigned char>(lower[i + 2])))))) {
      s[C::TASK_CATEGORY_REASONING] += 1.5;
      break;
    }
  }
  return s;
}

// The category with the highest score (GENERAL when nothing scores `min_signal`), and the
// runner-up score.
C TopCategory(const std::array<double, 9>& s, double min_signal, double* top, double* second) {
  C best = C::TASK_CATEGORY_GENERAL;
  *top = 0;
  *second = 0;
  for (C c : kAllCategories) {
    if (s[c] > *top) {
      *second = *top;
      *top = s[c];
      best = c;
    } else if (s[c] > *second) {
      *second = s[c];
    }
  }
  if (*top < min_signal) return C::TASK_CATEGORY_GENERAL;
  return best;
}

std::string FirstWord(absl::string_view lower) {
  size_t i = 0;
  while (i < lower.size() && !IsWordByte(lower[i])) ++i;
  size_t j = i;
  while (j < lower.size() && (IsWordByte(lower[j]) || lower[j] == '\'')) ++j;
  return std::string(lower.substr(i, j - i));
}

struct Piece {
  std::string text;  // original case
  bool explicit_separate = false;
  bool sequential = false;
};

// Strips leading markers ("1.", "-", "also", "then", "please", ...) and records what they say.
Piece Normalize(std::string text) {
  Piece p;
  absl::string_view t = absl::StripAsciiWhitespace(text);
  bool changed = true;
  while (changed && !t.empty()) {
    changed = false;
    // Enumerations: "1." "2)" "-" "*" "•"
    size_t i = 0;
    while (i < t.size() && std::isdigit(static_cast<unsigned char>(t[i]))) ++i;
    if (i > 0 && i < t.size() && (t[i] == '.' || t[i] == ')') &&
        (i + 1 == t.size() || t[i + 1] == ' ')) {
      t = absl::StripLeadingAsciiWhitespace(t.substr(i + 1));
      p.explicit_separate = changed = true;
      continue;
    }
    if (absl::StartsWith(t, "- ") || absl::StartsWith(t, "* ") || absl::StartsWith(t, "\xe2\x80\xa2")) {
      t = absl::StripLeadingAsciiWhitespace(t.substr(t[0] == '-' || t[0] == '*' ? 2 : 3));
      p.explicit_separate = changed = true;
      continue;
    }
    const std::string lower = absl::AsciiStrToLower(t.substr(0, 24));
    struct Marker {
      const char* word;
      bool separate, sequential;
    };
    for (const Marker& m : {Marker{"and then", true, true}, Marker{"after that", true, true},
                            Marker{"afterwards", true, true}, Marker{"then", true, true},
                            Marker{"next", true, true}, Marker{"finally", true, true},
                            Marker{"also", true, false}, Marker{"additionally", true, false},
                            Marker{"plus", true, false}, Marker{"first", true, false},
                            Marker{"firstly", true, false}, Marker{"second", true, false},
                            Marker{"secondly", true, false}, Marker{"third", true, false},
                            Marker{"lastly", true, false}, Marker{"and", false, false},
                            Marker{"please", false, false}, Marker{"now", false, false},
                            Marker{"can you", false, false}, Marker{"could you", false, false}}) {
      const size_t n = strlen(m.word);
      if (absl::StartsWith(lower, m.word) && (lower.size() == n || !IsWordByte(lower[n]))) {
        t = absl::StripLeadingAsciiWhitespace(t.substr(n));
        if (!t.empty() && t[0] == ',') t = absl::StripLeadingAsciiWhitespace(t.substr(1));
        p.explicit_separate |= m.separate;
        p.sequential |= m.sequential;
        changed = true;
        break;
      }
    }
  }
  p.text = std::string(t);
  return p;
}

bool IsInstruction(absl::string_view text, bool strong_only) {
  const std::string lower = absl::AsciiStrToLower(text);
  const std::string first = FirstWord(lower);
  if (strong_only) return IsOneOf(first, kStrongVerbs);
  if (IsOneOf(first, kVerbs)) return true;
  if (IsOneOf(first, kQuestionWords)) return true;
  absl::string_view trimmed = absl::StripTrailingAsciiWhitespace(text);
  return !trimmed.empty() && trimmed.back() == '?';
}

// Splits into sentences at . ? ! followed by whitespace and a capital, digit, dash or bullet,
// and at newlines. Abbreviations like "e.g." do not end a sentence.
std::vector<std::string> Sentences(const std::string& text) {
  std::vector<std::string> out;
  std::string current;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '\n') {
      if (!absl::StripAsciiWhitespace(current).empty()) out.push_back(current);
      current.clear();
      continue;
    }
    current += c;
    if ((c == '.' || c == '?' || c == '!') && i + 2 < text.size() && text[i + 1] == ' ') {
      const unsigned char next = text[i + 2];
      const bool starts = std::isupper(next) || std::isdigit(next) || next == '-' || next == '*' ||
                          next >= 0x80;
      const std::string lower = absl::AsciiStrToLower(current);
      const bool abbreviation = absl::EndsWith(lower, "e.g.") || absl::EndsWith(lower, "i.e.") ||
                                absl::EndsWith(lower, " vs.") || absl::EndsWith(lower, "mr.") ||
                                absl::EndsWith(lower, "dr.") || absl::EndsWith(lower, "etc.");
      if (starts && !abbreviation) {
        out.push_back(current);
        current.clear();
      }
    }
  }
  if (!absl::StripAsciiWhitespace(current).empty()) out.push_back(current);
  return out;
}

// Splits one sentence's instruction part at connectors: "and then", ", then", "; ", "also",
// "after that", and "and <verb>". Text after the first ": " stays with the last piece.
std::vector<std::string> SplitConnectors(const std::string& sentence) {
  size_t colon = sentence.find(": ");
  const std::string head = sentence.substr(0, colon);
  const std::string tail = colon == std::string::npos ? "" : sentence.substr(colon);
  const std::string lower = absl::AsciiStrToLower(head);
  std::vector<size_t> cuts;
  auto add_cuts = [&](const std::string& connector, bool need_verb) {
    for (size_t pos = lower.find(connector); pos != std::string::npos;
         pos = lower.find(connector, pos + 1)) {
      const size_t after = pos + connector.size();
      if (need_verb) {
        std::string next = FirstWord(absl::string_view(lower).substr(after));
        if (!IsOneOf(next, kJoinVerbs)) continue;
      }
      cuts.push_back(pos);
    }
  };
  add_cuts(" and then ", false);
  add_cuts(", then ", false);
  add_cuts("; ", true);
  add_cuts(", and also ", false);
  add_cuts(" and also ", false);
  add_cuts(", also ", false);
  add_cuts(" also ", true);
  add_cuts(", after that ", false);
  add_cuts(" then ", true);
  add_cuts(" and ", true);
  add_cuts(", and ", true);
  std::sort(cuts.begin(), cuts.end());
  cuts.erase(std::unique(cuts.begin(), cuts.end()), cuts.end());
  std::vector<std::string> pieces;
  size_t start = 0;
  for (size_t cut : cuts) {
    if (cut <= start) continue;
    pieces.push_back(head.substr(start, cut - start));
    start = cut;
  }
  pieces.push_back(head.substr(start) + tail);
  // Drop a leading comma or semicolon left by the cut.
  for (auto& p : pieces) {
    absl::string_view v = absl::StripLeadingAsciiWhitespace(p);
    while (!v.empty() && (v[0] == ',' || v[0] == ';')) v = absl::StripLeadingAsciiWhitespace(v.substr(1));
    p = std::string(v);
  }
  return pieces;
}

// Categories whose weight is above `floor` of the total, normalised to sum 1, best first (ties
// by category); GENERAL alone when none is.
std::vector<v1::CategoryScore> RankedCategories(const std::array<double, 9>& weight, double floor) {
  double sum = 0;
  for (C c : kAllCategories) sum += std::max(0.0, weight[c]);
  std::vector<v1::CategoryScore> out;
  for (C c : kAllCategories) {
    if (weight[c] <= 0 || weight[c] < floor * sum) continue;
    v1::CategoryScore cs;
    cs.set_category(c);
    cs.set_score(weight[c] / sum);
    out.push_back(cs);
  }
  std::sort(out.begin(), out.end(), [](const v1::CategoryScore& x, const v1::CategoryScore& y) {
    return x.score() != y.score() ? x.score() > y.score() : x.category() < y.category();
  });
  if (out.empty()) {
    v1::CategoryScore cs;
    cs.set_category(C::TASK_CATEGORY_GENERAL);
    cs.set_score(1);
    out.push_back(cs);
  }
  return out;
}

// The sentences of `text`, each marked true when it lies in the middle of a long prompt. The
// middle of a long prompt is material, passed on whole: asks are at its start or end, and the
// cost of reading a pasted book stays bounded. The cuts fall on line breaks when there are any.
std::vector<std::pair<std::string, bool>> WindowSentences(const std::string& text) {
  std::vector<std::pair<std::string, bool>> out;
  if (text.size() <= kHeadBytes + kTailBytes) {
    for (std::string& s : Sentences(text)) out.emplace_back(std::move(s), false);
    return out;
  }
  size_t head = text.rfind('\n', kHeadBytes);
  if (head == std::string::npos || head < kHeadBytes / 2) head = kHeadBytes;
  size_t tail = text.find('\n', text.size() - kTailBytes);
  if (tail == std::string::npos) tail = text.size() - kTailBytes;
  // Never cut inside a UTF-8 sequence.
  while (head > 0 && (static_cast<unsigned char>(text[head]) & 0xC0) == 0x80) --head;
  while (tail < text.size() && (static_cast<unsigned char>(text[tail]) & 0xC0) == 0x80) ++tail;
  for (std::string& s : Sentences(text.substr(0, head))) out.emplace_back(std::move(s), false);
  const std::string middle(absl::StripAsciiWhitespace(absl::string_view(text).substr(head, tail - head)));
  if (!middle.empty()) out.emplace_back(middle, true);
  for (std::string& s : Sentences(text.substr(tail))) out.emplace_back(std::move(s), false);
  return out;
}

std::string LastUserMessage(const v1::CompleteRequest& request) {
  for (int i = request.messages_size() - 1; i >= 0; --i) {
    if (request.messages(i).role() == "user") return request.messages(i).content();
  }
  return request.messages().empty() ? "" : request.messages().rbegin()->content();
}

// Distinct code-syntax markers in `text` (pasted code counts fully: it says what the request is
// about), at most three.
// `symbols_only` leaves out keywords that also occur in prose ("return the result").
int CodeSyntax(absl::string_view text, bool symbols_only = false) {
  static constexpr const char* kSymbols[] = {"()", "{", "};", "=>", "#include", "def ", "->",
                                             "::", "!=", "++", "```", "self.", "std::",
                                             "console.", "print(", "</"};
  static constexpr const char* kKeywords[] = {"import ", "return ", "const ", "var ", "let ",
                                              "public "};
  int n = 0;
  for (const char* sym : kSymbols) {
    if (text.find(sym) != absl::string_view::npos && ++n == 3) return n;
  }
  if (symbols_only) return n;
  for (const char* sym : kKeywords) {
    if (text.find(sym) != absl::string_view::npos && ++n == 3) return n;
  }
  return n;
}

}  // namespace

std::array<double, 9> RequestAnalyzer::Score(const std::string& whole) {
  const std::string text = ReadWindow(whole);  // bounded cost; the same window the model reads
  std::string instruction, payload;
  SplitInstruction(text, &instruction, &payload);
  std::array<double, 9> s = ScoreLower(absl::AsciiStrToLower(instruction));
  s[C::TASK_CATEGORY_CODE] += 1.5 * CodeSyntax(text);
  if (!payload.empty()) {
    std::array<double, 9> p = ScoreLower(absl::AsciiStrToLower(payload));
    for (C c : kAllCategories) s[c] += 0.3 * p[c];
  }
  return s;
}

RequestAnalyzer::RequestAnalyzer(AnalyzerOptions options)
    : options_(options), model_(options.model ? *options.model : CategoryModel::Builtin()) {}

Analysis RequestAnalyzer::AnalyzeText(const std::string& text, int64_t max_output_tokens) const {
  Analysis a;
  // 1. Pieces: sentences, then connectors; mark instructions and context.
  std::vector<std::string> context;
  bool in_payload = false;
  // Score(text), when an ask turns out to be the whole text (one short question): the
  // single-ask verdict below scores the whole text and need not do it twice.
  std::optional<std::array<double, 9>> whole_scores;
  for (const auto& [sentence, middle] : WindowSentences(text)) {
    if (middle) {
      context.push_back(sentence);
      in_payload = true;
      continue;
    }
    if (CodeSyntax(sentence, /*symbols_only=*/true) > 0 && !a.asks.empty()) {
      // A line of pasted code: material for the asks, never an ask itself.
      context.push_back(sentence);
      in_payload = true;
      continue;
    }
    for (const std::string& raw : SplitConnectors(sentence)) {
      Piece piece = Normalize(raw);
      if (piece.text.empty()) continue;
      const bool instruction =
          IsInstruction(piece.text, /*strong_only=*/in_payload && !piece.explicit_separate);
      if (!instruction) {
        context.push_back(piece.text);
        continue;
      }
      Ask ask;
      ask.text = piece.text;
      ask.explicit_separate = piece.explicit_separate;
      ask.sequential = piece.sequential;
      std::string instr, payload;
      SplitInstruction(piece.text, &instr, &payload);
      if (!payload.empty()) {
        in_payload = true;
        context.push_back(std::string(absl::StripAsciiWhitespace(payload)));
        ask.text = std::string(absl::StripAsciiWhitespace(instr));
      }
      // An ask is scored on its own instruction; what it carries after a colon counts 0.3.
      ask.scores = Score(instr);
      if (payload.empty() && instr == text) whole_scores = ask.scores;
      if (!payload.empty()) {
        std::array<double, 9> p = Score(payload);
        for (C c : kAllCategories) ask.scores[c] += 0.3 * p[c];
      }
      // The classifier reads the instruction (pasted material would decide what the ask is
      // "about": an explanation of pasted code is not code), with the lexicon's scores.
      if (!options_.lexicon_only) ask.probs = model_.Predict(instr, ask.scores);
      const std::string lower = absl::AsciiStrToLower(instr);
      ask.refers_back = !a.asks.empty() && HasAny(lower, kBackReferences);
      a.asks.push_back(std::move(ask));
    }
  }
  a.context = absl::StrJoin(context, " ");
  if (a.asks.empty()) {
    Ask whole;
    whole.text = text;
    whole.scores = Score(text);
    whole_scores = whole.scores;
    a.asks.push_back(whole);
  }
  if (a.asks.size() == 1) return Decide(text, std::move(a), max_output_tokens, whole_scores);
  // 2. Categories; asks without a signal lean on their neighbour.
  double top, second;
  int lexicon_decided = 0;
  for (Ask& ask : a.asks) {
    const C lexicon = TopCategory(ask.scores, options_.min_signal, &top, &second);
    ask.category = options_.lexicon_only ? lexicon : ask.probs.best();
    // The classifier learnt from whole prompts; on a short fragment of one it may be unsure
    // where the lexicon has a clear cue ("explain the differences" is comparison): then the
    // lexicon decides that ask.
    if (!options_.lexicon_only && a.asks.size() > 1 && ask.probs.best_p() < options_.fragment_sure &&
        top >= options_.min_signal && lexicon != ask.category) {
      ask.category = lexicon;
      ++lexicon_decided;
    }
  }
  // 3. Merge adjacent asks of one category unless they were asked for separately; merge asks
  // with no signal into the previous one unless separate.
  std::vector<Ask> merged;
  for (Ask& ask : a.asks) {
    TopCategory(ask.scores, options_.min_signal, &top, &second);
    const bool no_signal = top < options_.min_signal;
    if (!merged.empty() && !ask.explicit_separate &&
        (ask.category == merged.back().category || no_signal)) {
      Ask& prev = merged.back();
      prev.text = absl::StrCat(prev.text, " ", ask.text);
      for (C c : kAllCategories) prev.scores[c] += ask.scores[c];
      continue;
    }
    merged.push_back(std::move(ask));
  }
  a.asks = std::move(merged);
  constexpr size_t kMaxAsks = 8;
  while (a.asks.size() > kMaxAsks) {
    Ask last = std::move(a.asks.back());
    a.asks.pop_back();
    a.asks.back().text = absl::StrCat(a.asks.back().text, " ", last.text);
  }

  if (a.asks.size() == 1) return Decide(text, std::move(a), max_output_tokens, whole_scores);

  // 4. Whole-request category scores, normalised: the classifier's mean over the asks, or the
  // sum of their lexicon scores.
  std::array<double, 9> total{};
  for (const Ask& ask : a.asks) {
    for (C c : kAllCategories) total[c] += options_.lexicon_only ? ask.scores[c] : ask.probs.of(c);
  }
  a.categories = RankedCategories(total, 0);

  // 5. Several asks: compile.
  a.estimated_tokens = CountTokens(text) + max_output_tokens * static_cast<int64_t>(a.asks.size());
  a.kind = v1::PLAN_KIND_COMPILED;
  std::vector<std::string> parts;
  for (const Ask& ask : a.asks) {
    parts.push_back(options_.lexicon_only
                        ? CategoryName(ask.category)
                        : absl::StrFormat("%s %.2f", CategoryName(ask.category), ask.probs.of(ask.category)));
  }
  a.reasons.push_back(absl::StrCat(
      a.asks.size(), " separate asks (", absl::StrJoin(parts, ", "),
      options_.lexicon_only ? ""
      : lexicon_decided    ? absl::StrCat("; classifier, the lexicon for ", lexicon_decided,
                                          " it was unsure of")
                           : "; classifier",
      "): compile into sub-tasks"));
  return a;
}

// One ask: the whole request goes to one model, or to several that compete.
Analysis RequestAnalyzer::Decide(const std::string& text, Analysis a, int64_t max_output_tokens,
                                 const std::optional<std::array<double, 9>>& whole_scores) const {
  a.estimated_tokens = CountTokens(text) + max_output_tokens;
  Ask& only = a.asks.front();
  // The whole request is scored (pasted code says what it is about).
  only.scores = whole_scores ? *whole_scores : Score(text);
  double top, second;
  const C lexicon_best = TopCategory(only.scores, options_.min_signal, &top, &second);
  const std::string lower = absl::AsciiStrToLower(text);
  int words = 0;  // runs of non-spaces; a vague request is short
  for (size_t i = 0; i < text.size() && words <= options_.vague_max_words; ++i) {
    words += text[i] != ' ' && (i == 0 || text[i - 1] == ' ');
  }
  const bool vague =
      (top < 2.0 && words <= options_.vague_max_words && HasAny(lower, kVague)) ||
      (top < 1.0 && words <= 3 && std::all_of(text.begin(), text.end(), [](char c) {
         return static_cast<unsigned char>(c) < 0x80;
       }));
  if (options_.lexicon_only) {
    only.category = lexicon_best;
    a.categories = RankedCategories(only.scores, 0);
  } else {
    only.probs = model_.Predict(text, only.scores);
    only.category = only.probs.best();
    std::array<double, 9> p{};
    for (C c : kAllCategories) p[c] = only.probs.of(c);
    a.categories = RankedCategories(p, 0.01);
  }
  if (options_.lexicon_only) {
    if (second >= options_.compete_min_score && second >= options_.compete_tie_ratio * top) {
      C runner_up = C::TASK_CATEGORY_GENERAL;
      for (C c : kAllCategories) {
        if (c != lexicon_best && only.scores[c] == second) runner_up = c;
      }
      a.kind = v1::PLAN_KIND_COMPETE;
      a.reasons.push_back(absl::StrFormat(
          "no category clearly ahead (%s %.1f vs %s %.1f): let several models compete",
          CategoryName(lexicon_best), top, CategoryName(runner_up), second));
      return a;
    }
  } else {
    const CategoryProbs& p = only.probs;
    if (p.second_p() >= options_.tie_min && p.margin() < options_.tie_margin) {
      a.kind = v1::PLAN_KIND_COMPETE;
      a.reasons.push_back(absl::StrFormat(
          "classifier: no category clearly ahead (%s %.2f vs %s %.2f): let several models compete",
          CategoryName(p.best()), p.best_p(), CategoryName(p.second()), p.second_p()));
      return a;
    }
  }
  if (vague) {
    a.kind = v1::PLAN_KIND_COMPETE;
    a.reasons.push_back("short, open-ended request with no clear skill: let several models compete");
    return a;
  }
  a.kind = v1::PLAN_KIND_PASSTHROUGH;
  if (options_.lexicon_only) {
    if (top < options_.min_signal) {
      a.reasons.push_back("a single request with no specific skill: one general model answers");
    } else {
      a.reasons.push_back(absl::StrFormat("a single %s request (score %.1f, next %.1f): one model answers",
                                          CategoryName(lexicon_best), top, second));
    }
    return a;
  }
  const CategoryProbs& p = only.probs;
  if (p.best_p() < options_.unsure_below) {
    only.category = C::TASK_CATEGORY_GENERAL;
    a.reasons.push_back(absl::StrFormat(
        "classifier unsure (best %s %.2f < %.2f, entropy %.1f bits): one general model answers",
        CategoryName(p.best()), p.best_p(), options_.unsure_below, p.entropy()));
    return a;
  }
  a.reasons.push_back(absl::StrFormat(
      "a single %s request (classifier %.2f, next %s %.2f): one model answers",
      CategoryName(p.best()), p.best_p(), CategoryName(p.second()), p.second_p()));
  return a;
}

Analysis RequestAnalyzer::Analyze(const v1::CompleteRequest& request,
                                  int64_t max_output_tokens) const {
  Analysis a = AnalyzeText(LastUserMessage(request), max_output_tokens);
  int64_t history = 0;
  for (const auto& m : request.messages()) history += CountTokens(m.content());
  a.estimated_tokens += history - CountTokens(LastUserMessage(request));
  if (request.mode() != v1::PLAN_KIND_UNSPECIFIED) {
    a.reasons.insert(a.reasons.begin(),
                     absl::StrCat("the client asked for plan kind ",
                                  absl::AsciiStrToLower(absl::StripPrefix(
                                      v1::PlanKind_Name(request.mode()), "PLAN_KIND_"))));
    a.kind = request.mode();
  } else if (!request.model().empty() || !request.family().empty()) {
    a.reasons.insert(a.reasons.begin(),
                     absl::StrCat("the client pinned ",
                                  request.model().empty() ? "family " + request.family()
                                                          : "model " + request.model(),
                                  ": passthrough"));
    a.kind = v1::PLAN_KIND_PASSTHROUGH;
  }
  return a;
}

}  // namespace loom
