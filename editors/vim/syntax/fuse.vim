" Vim syntax file
" Language:    fuse (fusec's graph specs, docs/LANGUAGE.md)
" Filenames:   *.fuse

if exists("b:current_syntax")
  finish
endif

let s:cpo_save = &cpo
set cpo&vim

" keywords (LANGUAGE.md section 1); types and literals among them
syn keyword fuseVersion     fuse
syn keyword fuseDeclaration dim block graph
syn keyword fuseStatement   return require
syn keyword fuseRepeat      for in
syn keyword fuseBoolean     true false
syn keyword fuseType        f32 f16 bf16 int float bool

" the name a block or graph declares
syn match fuseDefName "\%(\<\%(block\|graph\)\s\+\)\@<=\h\w*"

" built-in ops, where they are called (LANGUAGE.md section 3)
syn match fuseOp "\<\%(upsample\|concat\|conv2d\|batchnorm2d\|batchnorm1d\|linear\|layernorm\|mha\|param\|relu\|sigmoid\|tanh\|exp\|sqrt\|rsqrt\|silu\|abs\|neg\|gelu\|min\|max\|mean\|sum\|amax\|amin\|softmax\|matmul\|permute\|view\|flatten\|transpose\|avgpool2d\|maxpool2d\)\ze\s*("

" keyword arguments, written name=value (no space, not ==); the attributes of the built-in
" ops are defined last, so they win
syn match fuseKwArg "\<\h\w*\ze=\%([^=]\|$\)"
syn match fuseAttr "\<\%(size\|scale\|mode\|align_corners\|axis\|axes\|out\|kernel\|stride\|padding\|dilation\|groups\|bias\|eps\|heads\|shape\|approximate\|keepdim\|perm\|start\|end\|dims\)\ze=\%([^=]\|$\)"

" enum values of attributes (mode=, approximate=)
syn match fuseEnum "\%(=\s*\)\@<=\%(nearest\|bilinear\|none\|tanh\)\>\%(\s*(\)\@!"

" @scope: segments of letters, digits, _ and {expr} splices, joined by '.'
syn match fuseScope "@\%(\w\|{[^}\n]*}\)\+\%(\.\%(\w\|{[^}\n]*}\)\+\)*"

" numbers: 12, 0.5, 1e-5, 2.5E+3 (a float needs digits on both sides of '.')
syn match fuseInt   "\<\d\+\>"
syn match fuseFloat "\<\d\+\.\d\+\%([eE][+-]\=\d\+\)\=\>"
syn match fuseFloat "\<\d\+[eE][+-]\=\d\+\>"

syn region fuseString start=+"+ end=+"+ oneline

syn match fuseOperator "->\|//\|==\|!=\|<=\|>=\|\.\.\|[-+*/%<>=]"

syn keyword fuseTodo contained TODO FIXME XXX NOTE
syn match fuseComment "#.*$" contains=fuseTodo,@Spell

hi def link fuseVersion     PreProc
hi def link fuseDeclaration Keyword
hi def link fuseStatement   Statement
hi def link fuseRepeat      Repeat
hi def link fuseBoolean     Boolean
hi def link fuseType        Type
hi def link fuseDefName     Function
hi def link fuseOp          Function
hi def link fuseAttr        Identifier
hi def link fuseKwArg       Identifier
hi def link fuseEnum        Constant
hi def link fuseScope       Special
hi def link fuseInt         Number
hi def link fuseFloat       Float
hi def link fuseString      String
hi def link fuseOperator    Operator
hi def link fuseTodo        Todo
hi def link fuseComment     Comment

let b:current_syntax = "fuse"

let &cpo = s:cpo_save
unlet s:cpo_save
