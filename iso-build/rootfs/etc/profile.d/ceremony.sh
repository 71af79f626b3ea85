export LANG=C.UTF-8
export PATH=/usr/local/bin:$PATH
