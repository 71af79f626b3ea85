# On the first virtual console the ceremony menu starts; anywhere else, a plain shell.
[ -f /etc/profile.d/ceremony.sh ] && . /etc/profile.d/ceremony.sh
if [ "$(tty)" = /dev/tty1 ]; then
  exec /usr/local/bin/ceremony-console
fi
