"""inferlab.parallel"""
