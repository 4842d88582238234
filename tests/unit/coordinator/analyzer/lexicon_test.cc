#include "coordinator/analyzer/lexicon.h"

#include <string>

#include "gtest/gtest.h"
#include "loom/v1/common.pb.h"

namespace loom::lexicon {
namespace {

TEST(LexiconTest, CodeSyntaxCountsDistinctMarkersUpToThree) {
  EXPECT_EQ(CodeSyntax("no code here, just prose."), 0);
  EXPECT_EQ(CodeSyntax("call f() and f() again"), 1) << "a marker counts once";
  EXPECT_EQ(CodeSyntax("x != y"), 1);
  EXPECT_EQ(CodeSyntax("ends with a marker: a::"), 1) << "at the very end";
  EXPECT_EQ(CodeSyntax("a:"), 0) << "half a marker at the end";
  EXPECT_EQ(CodeSyntax("#include <x>\nint main() { return 0; }"), 3) << "capped at three";
  // Keywords that also occur in prose count only when asked.
  EXPECT_EQ(CodeSyntax("return the import of const var", /*symbols_only=*/true), 0);
  EXPECT_EQ(CodeSyntax("return the import of const var", /*symbols_only=*/false), 3);
  EXPECT_EQ(CodeSyntax("let x be f()", /*symbols_only=*/false), 2);
}

TEST(LexiconTest, IsOneOfMatchesWholeWordsOnly) {
  static constexpr const char* kWords[] = {"write", "wr", "list"};
  EXPECT_TRUE(IsOneOf("write", kWords));
  EXPECT_TRUE(IsOneOf("wr", kWords));
  EXPECT_FALSE(IsOneOf("w", kWords)) << "a prefix of a word";
  EXPECT_FALSE(IsOneOf("writes", kWords)) << "a word plus more";
  EXPECT_FALSE(IsOneOf("", kWords));
  EXPECT_FALSE(IsOneOf("lists", kWords));
}

TEST(LexiconTest, SplitInstructionDropsQuotesAndCutsAtTheFirstColon) {
  std::string instruction, payload;
  SplitInstruction("Translate \"good night\" and 'sleep well' into French: merci", &instruction, &payload);
  EXPECT_EQ(instruction, "Translate   and   into French");
  EXPECT_EQ(payload, " merci");
  SplitInstruction("don't stop: it's fine", &instruction, &payload);
  EXPECT_EQ(instruction, "don't stop") << "an apostrophe inside a word opens no quote";
  EXPECT_EQ(payload, " it's fine");
  SplitInstruction("an \"unclosed quote stays", &instruction, &payload);
  EXPECT_EQ(instruction, "an \"unclosed quote stays");
  EXPECT_EQ(payload, "");
  SplitInstruction("`a` `b`", &instruction, &payload);
  EXPECT_EQ(instruction, "   ") << "each quoted span is one space";
}

TEST(LexiconTest, NonAsciiCuesAreFoundAnywhereAndCountAtMostTwice) {
  using C = v1::TaskCategory;
  const double once = Score("翻译")[C::TASK_CATEGORY_TRANSLATION];
  ASSERT_GT(once, 0);
  // Characters around the cue share its first byte (a Chinese text is one run of word bytes).
  EXPECT_EQ(Score("我们今天把这个翻译一下")[C::TASK_CATEGORY_TRANSLATION], once);
  EXPECT_EQ(Score("翻译一下，再翻译一下")[C::TASK_CATEGORY_TRANSLATION], 2 * once);
  EXPECT_EQ(Score("翻译翻译翻译")[C::TASK_CATEGORY_TRANSLATION], 2 * once) << "at most two";
  EXPECT_EQ(Score("我们今天翻")[C::TASK_CATEGORY_TRANSLATION], 0) << "half a cue at the end";
  EXPECT_EQ(Score("plain ascii text")[C::TASK_CATEGORY_TRANSLATION], 0);
}

TEST(LexiconTest, CuesAreWholeWordsWhateverTheirLetters) {
  using C = v1::TaskCategory;
  // A cue that starts with a Latin letter and has accented ones is looked up as a word.
  const double once = Score("résumé")[C::TASK_CATEGORY_SUMMARIZATION];
  ASSERT_GT(once, 0);
  EXPECT_EQ(Score("fais un résumé, puis un autre résumé")[C::TASK_CATEGORY_SUMMARIZATION], 2 * once);
  EXPECT_EQ(Score("résumés")[C::TASK_CATEGORY_SUMMARIZATION], 0) << "a longer word";
  EXPECT_EQ(Score("Write a POEM")[C::TASK_CATEGORY_CREATIVE], Score("write a poem")[C::TASK_CATEGORY_CREATIVE])
      << "case does not matter";
  // "Translate ... into <language>" needs the language as a word of its own.
  EXPECT_GT(Score("translate this into french")[C::TASK_CATEGORY_TRANSLATION],
            Score("translate this into frenchfries")[C::TASK_CATEGORY_TRANSLATION]);
}

TEST(LexiconTest, TheSkillsVerbsOfOtherLanguagesAreCues) {
  using C = v1::TaskCategory;
  // Whole words when they start with a Latin letter, anywhere when they do not, phrases too.
  EXPECT_GT(Score("Przetłumacz na angielski: dzień dobry")[C::TASK_CATEGORY_TRANSLATION], 0);
  EXPECT_GT(Score("Traduci in francese: buongiorno")[C::TASK_CATEGORY_TRANSLATION], 0);
  EXPECT_GT(Score("Bunu İngilizceye çevirir misin?")[C::TASK_CATEGORY_TRANSLATION], 0);
  EXPECT_GT(Score("Dịch sang tiếng Anh giúp mình")[C::TASK_CATEGORY_TRANSLATION], 0);
  EXPECT_GT(Score("Tóm tắt đoạn văn sau")[C::TASK_CATEGORY_SUMMARIZATION], 0);
  EXPECT_GT(Score("لخّص هذا النص")[C::TASK_CATEGORY_SUMMARIZATION], 0) << "with a shadda inside";
  EXPECT_GT(Score("Napisz wiersz o morzu")[C::TASK_CATEGORY_CREATIVE], 0);
  EXPECT_EQ(Score("traducido")[C::TASK_CATEGORY_TRANSLATION], 0) << "a longer word";
  // A cue at the start of a sentence has its capital: Cyrillic and Latin-1 ones are lowered too.
  EXPECT_GT(Score("Переведи на английский")[C::TASK_CATEGORY_TRANSLATION], 0);
  EXPECT_EQ(Score("Переведи на английский")[C::TASK_CATEGORY_TRANSLATION],
            Score("переведи на английский")[C::TASK_CATEGORY_TRANSLATION]);
  EXPECT_EQ(Score("Übersetze bitte")[C::TASK_CATEGORY_TRANSLATION],
            Score("übersetze bitte")[C::TASK_CATEGORY_TRANSLATION]);
}

TEST(LexiconTest, LowerCapitalsKeepsEveryCharactersLength) {
  std::string s = "ÉCRIS Объясни ЁЖ × Straße 中文";
  LowerCapitals(s.data(), s.size());
  EXPECT_EQ(s, "écris объясни ёж × straße 中文");
  std::string cut = "a\xD0";  // a Cyrillic character cut after its first byte
  LowerCapitals(cut.data(), cut.size());
  EXPECT_EQ(cut, "a\xD0");
}

}  // namespace
}  // namespace loom::lexicon
