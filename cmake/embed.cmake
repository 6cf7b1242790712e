# Embeds a text file in C: cmake -DIN=file -DOUT=file.c -DSYMBOL=name -DINCLUDE=header -P embed.cmake
# Writes `const char SYMBOL[]` (NUL-terminated) and `const unsigned long SYMBOL_size`, as bytes
# rather than a string literal (ISO C limits string literals to 4095 characters).
file(READ ${IN} hex HEX)
string(LENGTH "${hex}" digits)
math(EXPR size "${digits} / 2")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
file(WRITE ${OUT}
     "/* Generated from ${IN} by cmake/embed.cmake: do not edit. */\n"
     "#include \"${INCLUDE}\"\n"
     "const char ${SYMBOL}[] = {${bytes} 0};\n"
     "const unsigned long ${SYMBOL}_size = ${size};\n")
