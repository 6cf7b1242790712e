" .fuse graph specs (fusec)
autocmd BufRead,BufNewFile *.fuse setfiletype fuse
