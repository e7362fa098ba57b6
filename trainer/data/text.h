// Byte-level text: every byte of a file is one token (ids 0..255), so any text file
// trains a character-level GPT with no tokenizer. Debian's fortunes packages install
// suitable text under /usr/share/games/fortunes.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace petaring {

// The bytes of `path` as token ids. Throws kNotFound when it is missing or unreadable,
// kInvalidArgument when it is empty.
std::vector<uint16_t> read_text_file(const std::string& path);

}  // namespace petaring
