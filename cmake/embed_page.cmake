# Writes OUTPUT, a C++ header defining `constexpr const char kPage[]` as the
# contents of INPUT (the serve command's web page), at build time: the page
# stays one plain file in the repository, with no JS build step.
# Usage: cmake -DINPUT=web/index.html -DOUTPUT=gen/page.h -P embed_page.cmake
file(READ "${INPUT}" content)
string(FIND "${content}" ")capsnet_page\"" clash)
if(NOT clash EQUAL -1)
  message(FATAL_ERROR "${INPUT} contains the raw string's end marker )capsnet_page\"")
endif()
file(WRITE "${OUTPUT}.tmp"
  "// Generated from ${INPUT} by cmake/embed_page.cmake; do not edit.\n"
  "#pragma once\n"
  "namespace capsnet::serve {\n"
  "constexpr const char kPage[] = R\"capsnet_page(${content})capsnet_page\";\n"
  "} // namespace capsnet::serve\n")
file(RENAME "${OUTPUT}.tmp" "${OUTPUT}")
