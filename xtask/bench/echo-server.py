"""The seed's echo-server.py (Programming Python), ported to Python 3, with a thread per
client as in the book's thread-server.py: replies b'Echo=>' + each chunk read.

Not in the seed: -host/-port options (port 0 = any free port) and a first stdout line
`listening echo-server.py tcp://HOST:PORT`, so switchboard-bench can find it.

usage: python3 echo-server.py [-host 127.0.0.1] [-port 50007]
"""
import sys
import threading
import time
from socket import AF_INET, SOCK_STREAM, SOL_SOCKET, SO_REUSEADDR, socket


def now():
    return time.ctime(time.time())


def handleClient(connection):
    while True:
        data = connection.recv(1024)
        if not data:
            break
        connection.send(b'Echo=>' + data)
    connection.close()


def main(args):
    opts = dict(zip(args[::2], args[1::2]))
    myHost = opts.get('-host', '')
    myPort = int(opts.get('-port', 50007))
    sockobj = socket(AF_INET, SOCK_STREAM)
    sockobj.setsockopt(SOL_SOCKET, SO_REUSEADDR, 1)
    sockobj.bind((myHost, myPort))
    sockobj.listen(128)
    print('listening echo-server.py tcp://%s:%d' % sockobj.getsockname()[:2], flush=True)
    while True:
        connection, address = sockobj.accept()
        print('Server connected by', address, 'at', now())
        threading.Thread(target=handleClient, args=(connection,), daemon=True).start()


if __name__ == '__main__':
    main(sys.argv[1:])
